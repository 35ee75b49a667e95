"""One job's work: the classify pipeline on a stored upload, reporting progress.

``decode & sample -> batch -> infer -> respond``, as ``POST /classify`` runs it (one
decode in a worker, the same batcher, the same response), with two differences
that keep synchronous requests first: the decode starts only once a decode
worker is idle, and the clips go to the batcher one batch at a time, so a
request's clips never queue behind a film's. Progress: the decode is the first
``DECODE_SHARE`` of the fraction (frames picked, as the worker counts them), each
batch inferred a part of the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from service.api.classify import classify_params, ms, respond
from service.api.schemas import ClassifyResponse, Timing
from service.core.errors import OverloadedError
from service.core.runtime import Runtime
from service.jobs.record import JobParams
from service.media.decode_job import DecodedVideo, DecodeJob
from service.media.progress import read_progress
from service.pipeline.batcher import Batcher, Clip, Inferred

DECODE_SHARE = 0.8
# How often the decode's progress file is read.
WATCH_EVERY_S = 0.5
# How often a job waiting for a free decode worker or batcher room looks again.
WAIT_S = 0.05


@dataclass(frozen=True, slots=True)
class Progress:
    fraction: float
    segments_done: int
    segments_total: int | None


Report = Callable[[Progress], Awaitable[None]]


async def run_job(
    runtime: Runtime,
    upload: Path,
    params: JobParams,
    *,
    upload_ms: float,
    report: Report,
    progress_path: Path,
) -> ClassifyResponse:
    """The ``/classify`` body for ``upload``; raises the error ``/classify`` would.

    The decode counts its frames in ``progress_path`` (removed here afterwards)."""
    start = time.perf_counter()
    # Not awaited: a request's batch does not wait for a film that is still decoding.
    async with runtime.models.use(params.model, params.version, awaited=False) as served:
        query = classify_params(
            runtime.settings,
            served.info,
            top_k=params.top_k,
            segments=params.window_s is not None,
            window_s=params.window_s,
        )
        await _idle_decoder(runtime)
        job = dataclasses.replace(
            runtime.decode_job(query.window_s, served.info), progress_path=str(progress_path)
        )
        watching = asyncio.create_task(_watch(progress_path, report))
        try:
            decoded, decode_s = await _decode(runtime, upload, job)
        finally:
            watching.cancel()
            progress_path.unlink(missing_ok=True)
        total = len(decoded.window_clips) if query.window_s is not None else None
        await report(Progress(DECODE_SHARE, 0, total))
        queued = time.perf_counter()
        results = await _infer(served.running_batcher, decoded, report, total)
        return respond(
            served.info,
            decoded,
            results,
            top_k=query.top_k,
            window_s=query.window_s,
            timing=Timing(
                upload=upload_ms,
                decode=ms(decode_s),
                queue=ms(min(r.started for r in results) - queued),
                inference=ms(sum(r.finished - r.started for r in _runs(results))),
                total=ms(time.perf_counter() - start),
            ),
        )


async def _idle_decoder(runtime: Runtime) -> None:
    """Wait until a decode worker has nothing to do: requests take workers first."""
    pool = runtime.decode_pool
    while pool.pending >= pool.workers:
        await asyncio.sleep(WAIT_S)


async def _watch(path: Path, report: Report) -> None:
    """Report the decode's share of the progress as the worker counts its frames."""
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        done = read_progress(path)
        if done is not None:
            await report(Progress(DECODE_SHARE * done, 0, None))


async def _decode(runtime: Runtime, upload: Path, job: DecodeJob) -> tuple[DecodedVideo, float]:
    timeout_s = runtime.settings.jobs_decode_timeout_s
    while True:
        try:
            return await runtime.decode_pool.decode(upload, job, timeout_s=timeout_s)
        except OverloadedError:  # a request took the worker meanwhile
            await _idle_decoder(runtime)


async def _infer(
    batcher: Batcher, decoded: DecodedVideo, report: Report, total: int | None
) -> list[Inferred]:
    """One batch at a time; a full queue is waited out rather than failed."""
    clips: list[Clip] = [decoded.clip, *decoded.window_clips]
    results: list[Inferred] = []
    size = batcher.max_batch_size
    for first in range(0, len(clips), size):
        chunk = clips[first : first + size]
        while True:
            try:
                results += await batcher.submit(chunk, awaited=False)
                break
            except OverloadedError:
                await asyncio.sleep(WAIT_S)
        done = len(results) - 1  # the first clip is the whole video's
        fraction = DECODE_SHARE + (1 - DECODE_SHARE) * len(results) / len(clips)
        await report(Progress(min(fraction, 0.999), max(done, 0), total))
    return results


def _runs(results: Sequence[Inferred]) -> list[Inferred]:
    """One result per ONNX run (clips of one run share its times)."""
    seen: dict[tuple[float, float], Inferred] = {}
    for r in results:
        seen.setdefault((r.started, r.finished), r)
    return list(seen.values())
