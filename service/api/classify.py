"""The classify pipeline: receive upload -> decode & sample -> batch -> infer -> respond.

Each stage is its own module in :mod:`service.pipeline` (``upload``,
``decode_pool``, ``batcher``, ``inference``); this one strings them together
for a request and builds the response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request

from service.api.schemas import (
    ClassifyResponse,
    LabelScore,
    ModelRef,
    Segment,
    Timing,
    VideoSummary,
)
from service.core.errors import OverloadedError, ParameterError
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.media.decode_job import DecodedVideo
from service.media.timestamps import FloatArray
from service.models.served_model import ServedModel
from service.pipeline.batcher import Inferred, Probabilities
from service.pipeline.inference import ModelInfo
from service.pipeline.upload import receive_upload

DEFAULT_TOP_K = 5


@dataclass(frozen=True, slots=True)
class ClassifyParams:
    top_k: int
    window_s: float | None  # None: whole video only, no segments


def classify_params(
    s: Settings, info: ModelInfo, *, top_k: int | None, segments: bool, window_s: float | None
) -> ClassifyParams:
    """The query as the pipeline takes it, for ``info``'s model. ``top_k`` over the classes
    gives them all; ``window_s`` implies segments; its bounds are also in the schema."""
    classes = info.num_classes
    k = min(DEFAULT_TOP_K if top_k is None else top_k, classes)
    if window_s is not None and not s.min_window_s <= window_s <= s.max_window_s:
        raise ParameterError(
            f"window_s must be between {s.min_window_s:g} and {s.max_window_s:g} seconds"
        )
    if window_s is None and not segments:
        return ClassifyParams(top_k=k, window_s=None)
    return ClassifyParams(top_k=k, window_s=window_s or s.segment_window_s)


async def classify(
    request: Request, runtime: Runtime, served: ServedModel, params: ClassifyParams
) -> ClassifyResponse:
    """Run one request through every stage of the pipeline, on ``served``'s model."""
    start = time.perf_counter()
    settings, metrics = runtime.settings, runtime.metrics
    batcher, info = served.running_batcher, served.info
    if batcher.free_slots == 0:
        # Fail before reading a byte: the upload would only wait behind a full queue.
        raise OverloadedError("the inference queue is full; retry shortly")

    inferring: asyncio.Task[list[Inferred]] | None = None
    try:
        async with receive_upload(  # receive upload
            request,
            max_bytes=settings.max_upload_bytes,
            temp_dir=runtime.spool.path,
            idle_timeout_s=settings.upload_idle_timeout_s,
            timeout_s=settings.upload_timeout_s,
        ) as upload:
            uploaded = time.perf_counter()
            metrics.upload_bytes.observe(upload.size)
            decoded, decode_s = await runtime.decode_pool.decode(  # decode & sample
                upload.path, runtime.decode_job(params.window_s, info)
            )
            metrics.decode_seconds.observe(decode_s)
            queued = time.perf_counter()
            # Batch & infer while the spooled file is removed (a big file takes ms to free).
            inferring = asyncio.create_task(batcher.submit([decoded.clip, *decoded.window_clips]))
        results = await inferring
    except BaseException:
        if inferring is not None:
            inferring.cancel()
        raise

    return respond(  # respond
        info,
        decoded,
        results,
        top_k=params.top_k,
        window_s=params.window_s,
        timing=Timing(
            upload=ms(uploaded - start),
            decode=ms(decode_s),
            queue=ms(min(r.started for r in results) - queued),
            inference=ms(max(r.finished for r in results) - min(r.started for r in results)),
            total=ms(time.perf_counter() - start),
        ),
    )


def respond(
    model: ModelInfo,
    decoded: DecodedVideo,
    results: Sequence[Inferred],
    *,
    top_k: int,
    window_s: float | None,
    timing: Timing,
) -> ClassifyResponse:
    """The response body: whole-video result first, then one entry per window.

    Also what ``python -m bulk`` writes for a file, so that both say the same.
    """
    info, labels = decoded.info, model.labels
    whole = _normalised(results[0].probabilities)
    segments = None
    if window_s is not None:
        segments = [
            Segment(
                start_s=round(float(start), 6),
                end_s=round(float(end), 6),
                top=_top(labels, _normalised(r.probabilities), top_k),
            )
            for (start, end), r in zip(decoded.windows, results[1:], strict=True)
        ]
    return ClassifyResponse(
        model=ModelRef(name=model.name, version=model.version),
        video=VideoSummary(
            duration_s=info.duration_s,
            fps=info.fps,
            width=info.width,
            height=info.height,
            codec=info.codec,
            container=info.container,
            frames_used=len(decoded.clip),
            frames_decoded=decoded.decoded_frames,
        ),
        top=_top(labels, whole, top_k),
        probabilities={label: float(p) for label, p in zip(labels, whole, strict=True)},
        segments=segments,
        window_s=None if decoded.window_s is None else round(decoded.window_s, 6),
        timing_ms=timing,
    )


def _normalised(probs: Probabilities) -> FloatArray:
    # The graph ends in softmax; float32 rounding aside, this is a no-op.
    p: FloatArray = probs.astype(np.float64)
    p /= p.sum()
    return p


def _top(labels: Sequence[str], probs: FloatArray, k: int) -> list[LabelScore]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [LabelScore(label=labels[i], score=float(probs[i])) for i in order]


def ms(seconds: float) -> float:
    """Seconds as the milliseconds ``timing_ms`` shows."""
    return round(seconds * 1000, 3)
