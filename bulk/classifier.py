"""A file in, a row out: the service's pipeline without HTTP, shared by both engines.

It runs the service's own :class:`~service.core.runtime.Runtime`: the model
loaded and checked as ``python -m service`` does, the decode workers (a crash
or a hang fails only its file: ``decoder-crashed``, ``decode-timeout``), the
batcher that puts clips of several files into one ONNX Runtime run, and the
response builder of ``POST /classify``, so a file's row is what the service
answers for the same bytes. What the upload path checks first is checked
here too (an empty file is ``no-file``); the upload size cap is not, since
nothing is uploaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bulk.table import Row, failed_row, ok_row
from service.api.classify import respond
from service.api.schemas import Timing
from service.core.errors import InternalError, NoFileError, StartupError, VidlstmError
from service.core.lifecycle import Phase
from service.core.runtime import Runtime
from service.core.settings import Settings
from service.pipeline.decode_pool import DecodeHook
from service.pipeline.inference import Model

log = logging.getLogger(__name__)

_NO_TIMING = Timing(upload=0, decode=0, queue=0, inference=0, total=0)
# Files in flight per decode worker: one decoding, one waiting, so none idles.
IN_FLIGHT_PER_WORKER = 2


def bulk_settings(
    model: Path, *, workers: int, providers: tuple[str, ...] = ("auto",), **more: Any
) -> Settings:
    """The service's settings for a bulk job: its own admission limits are off
    (the engine feeds at most ``IN_FLIGHT_PER_WORKER`` files per worker), and the
    inference queue holds every clip those files can have."""
    max_segments = int(more.get("max_segments", Settings.model_fields["max_segments"].default))
    return Settings(
        model_path=model,
        decode_workers=workers,
        providers=providers,
        max_decode_wait_s=1e9,
        max_requests_in_flight=1_000_000,
        max_queue=(max_segments + 1) * IN_FLIGHT_PER_WORKER * workers,
        **more,
    )


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What a job asks of every file, and how often its rows are written out."""

    top_k: int = 5
    segments: bool = False
    part_rows: int = 256  # rows per Parquet part: what a killed job loses at most


class Classifier:
    """``async with Classifier(settings, ...) as c: row = await c.classify(path)``."""

    def __init__(
        self,
        settings: Settings,
        *,
        top_k: int = 5,
        segments: bool = False,
        model: Model | None = None,
        decode_hook: DecodeHook | None = None,
    ) -> None:
        """``decode_hook``: fault injection in the decode workers (tests only)."""
        self.runtime = Runtime(settings, model=model, decode_hook=decode_hook)
        self.top_k = top_k
        self.window_s = settings.segment_window_s if segments else None

    @property
    def in_flight(self) -> int:
        """Files to keep in flight so that no worker waits."""
        return IN_FLIGHT_PER_WORKER * self.runtime.settings.decode_workers

    async def __aenter__(self) -> Classifier:
        await self.runtime.start()
        await self.runtime.wait_ready()
        if self.runtime.lifecycle.phase is Phase.FAILED:
            await self.runtime.stop()
            raise StartupError(self.runtime.lifecycle.failure or "warm-up failed")
        labels = self.runtime.model.info.num_classes
        self.top_k = max(1, min(self.top_k, labels))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.runtime.stop()

    @property
    def model_ref(self) -> dict[str, str]:
        info = self.runtime.model.info
        return {"name": info.name, "version": info.version}

    async def classify(self, path: Path) -> Row:
        """The file's row; never raises for what is wrong with the file."""
        start = time.perf_counter()
        size: int | None = None
        try:
            size = path.stat().st_size
            if size == 0:
                raise NoFileError("the file is empty")
            runtime = self.runtime
            # Counted as a request is: the batcher waits for files still decoding.
            async with runtime.lifecycle.work(), runtime.models.use(None, None) as served:
                job = runtime.decode_job(self.window_s, served.info)
                decoded, _ = await runtime.decode_pool.decode(path, job)
                results = await served.running_batcher.submit([decoded.clip, *decoded.window_clips])
            response = respond(
                served.info,
                decoded,
                results,
                top_k=self.top_k,
                window_s=self.window_s,
                timing=_NO_TIMING,
            )
        except (VidlstmError, OSError) as err:
            return failed_row(path, size, err, self.model_ref, time.perf_counter() - start)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug of ours: recorded, and the job goes on
            log.exception("unexpected failure on %s", path)
            failure = InternalError(f"unexpected failure: {type(err).__name__}")
            return failed_row(path, size, failure, self.model_ref, time.perf_counter() - start)
        return ok_row(path, size, response, time.perf_counter() - start)
