"""Everything one app instance serves with, and its start-up and shutdown order.

Start-up: load the models (clear error if a file is wrong; :mod:`service.models`),
start the decode workers and a batcher per model version, then warm them up in
the background; ``/health`` turns 200 only when that is done, and the model
repository is followed from then on. Shutdown: drain (wait for requests in
flight up to ``drain_timeout_s``), stop the batchers, stop the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from service.core.errors import InternalError, StartupError
from service.core.lifecycle import Lifecycle, Phase
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.media.decode_job import DecodeJob
from service.models.registry import ModelRegistry, load_file
from service.models.served_model import ServedModel
from service.pipeline.batcher import Batcher
from service.pipeline.decode_pool import DecodeHook, DecodePool
from service.pipeline.inference import Model, ModelInfo
from service.pipeline.spool import Spool

log = logging.getLogger(__name__)


def preflight(settings: Settings) -> Model | None:
    """Check what start-up needs and load the single model file (None with a repository,
    whose versions the registry loads); :class:`StartupError` says what is wrong."""
    temp_dir = settings.temp_dir
    if not temp_dir.is_dir() or not os.access(temp_dir, os.W_OK):
        raise StartupError(f"temp_dir {temp_dir} is not a writable directory")
    repository = settings.model_repository
    if repository is not None:
        if not repository.is_dir():
            raise StartupError(f"model repository {repository} is not a directory")
        return None
    return load_file(settings, settings.model_path)


class Runtime:
    """The models, decode workers, metrics and lifecycle of one app."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: Model | None = None,
        decode_hook: DecodeHook | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.lifecycle = Lifecycle(
            max_in_flight=settings.max_requests_in_flight, on_count=self.metrics.in_flight.set
        )
        self.decode_pool = DecodePool(
            workers=settings.decode_workers,
            timeout_s=settings.decode_timeout_s,
            hook=decode_hook,
            max_wait_s=settings.max_decode_wait_s,
            queue_per_worker=settings.decode_queue_per_worker,
            on_restart=lambda cause: self.metrics.worker_restarts.labels(cause=cause).inc(),
        )
        self.spool = Spool(settings.temp_dir)
        self.models = ModelRegistry(settings, self.metrics)
        self._preloaded = model
        self._warm_up_task: asyncio.Task[None] | None = None

    @property
    def served(self) -> ServedModel:
        """The default model's version a request without ?model= gets now."""
        served = self.models.default()
        if served is None:
            raise InternalError("the default model is not ready")
        return served

    @property
    def model(self) -> Model:
        return self.served.loaded

    @property
    def batcher(self) -> Batcher:
        return self.served.running_batcher

    def decode_job(self, window_s: float | None, info: ModelInfo | None = None) -> DecodeJob:
        """What to sample for ``info``'s model (the default one's by default)."""
        info = info or self.model.info
        return DecodeJob(
            num_frames=info.num_frames,
            height=info.height,
            width=info.width,
            limits=self.settings.limits,
            window_s=window_s,
            max_segments=self.settings.max_segments,
            mode=self.settings.decode_mode,
        )

    async def start(self) -> None:
        await self.models.start(self._preloaded)
        self._preloaded = None
        for served in self.models.listing():
            if served.model is not None:
                info = served.info
                log.info(
                    "model %s %s on %s",
                    info.name,
                    info.version,
                    served.model.provider,
                    extra={"labels": len(info.labels), "clip_shape": info.clip_shape},
                )
        self.spool.open()
        self.decode_pool.start()
        self._warm_up_task = asyncio.create_task(self._warm_up(), name="warm-up")

    async def _warm_up(self) -> None:
        try:
            await asyncio.gather(self.decode_pool.warm_up(), self.models.warm_up())
        except Exception as err:
            log.exception("warm-up failed")
            self.lifecycle.mark_failed(f"warm-up failed: {err!r}")
            return
        default = self.models.default()
        if default is None:
            reasons = "; ".join(f"{v.name} {v.version}: {v.reason}" for v in self.models.listing())
            self.lifecycle.mark_failed(f"warm-up failed: {reasons}")
            return
        info = default.info
        self.metrics.model.info(
            {"name": info.name, "version": info.version, "provider": default.loaded.provider}
        )
        self.models.watch()
        self.lifecycle.mark_ready()
        log.info("ready", extra={"decode_workers": self.decode_pool.workers})

    async def wait_ready(self) -> None:
        """Wait for the warm-up to finish (tests and embedders; the server does not block)."""
        if self._warm_up_task is not None:
            await asyncio.shield(self._warm_up_task)

    async def drain(self) -> bool:
        """Stop admitting work and wait for requests in flight; False on timeout."""
        self.lifecycle.begin_drain()
        if self.lifecycle.in_flight:
            log.info("draining", extra={"in_flight": self.lifecycle.in_flight})
        done = await self.lifecycle.wait_idle(self.settings.drain_timeout_s)
        if not done:
            log.warning("drain timed out", extra={"in_flight": self.lifecycle.in_flight})
        return done

    async def stop(self) -> None:
        if self._warm_up_task is not None:
            self._warm_up_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warm_up_task
        if self.lifecycle.phase is not Phase.FAILED:
            await self.drain()
        await self.models.stop()
        await asyncio.to_thread(self.decode_pool.close)
        self.spool.close()
        self.lifecycle.mark_stopped()
