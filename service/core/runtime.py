"""Everything one app instance serves with, and its start-up and shutdown order.

Start-up: load the model (clear error if the file is wrong), start the decode
workers and the batcher, then warm both up in the background; ``/health``
turns 200 only when that is done. Shutdown: drain (stop admitting, wait for
requests in flight up to ``drain_timeout_s``), stop the batcher, stop the workers.
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
from service.pipeline.batcher import Batcher
from service.pipeline.decode_pool import DecodeHook, DecodePool
from service.pipeline.inference import Model, load_model
from service.pipeline.spool import Spool

log = logging.getLogger(__name__)


def warm_up_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to ``max_batch_size``, and the maximum itself."""
    sizes = {1 << k for k in range(max_batch_size.bit_length()) if 1 << k <= max_batch_size}
    return sorted(sizes | {max_batch_size})


def preflight(settings: Settings) -> Model:
    """Check what start-up needs and load the model; :class:`StartupError` says what is wrong."""
    temp_dir = settings.temp_dir
    if not temp_dir.is_dir() or not os.access(temp_dir, os.W_OK):
        raise StartupError(f"temp_dir {temp_dir} is not a writable directory")
    return load_model(
        settings.model_path,
        providers=settings.provider_chain,
        intra_op_threads=settings.intra_op_threads,
        cuda_tf32=settings.cuda_tf32,
    )


class Runtime:
    """The model, decode workers, batcher, metrics and lifecycle of one app."""

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
        self._model = model
        self._batcher: Batcher | None = None
        self._warm_up_task: asyncio.Task[None] | None = None

    @property
    def model(self) -> Model:
        if self._model is None:
            raise InternalError("the model is not loaded")
        return self._model

    @property
    def loaded_model(self) -> Model | None:
        """The model, or None before start-up has loaded it."""
        return self._model

    @property
    def batcher(self) -> Batcher:
        if self._batcher is None:
            raise InternalError("the batcher is not running")
        return self._batcher

    def decode_job(self, window_s: float | None) -> DecodeJob:
        info = self.model.info
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
        s = self.settings
        if self._model is None:
            self._model = await asyncio.to_thread(preflight, s)
        info = self.model.info
        self.metrics.model.info(
            {"name": info.name, "version": info.version, "provider": self.model.provider}
        )
        log.info(
            "model %s %s on %s",
            info.name,
            info.version,
            self.model.provider,
            extra={"labels": len(info.labels), "clip_shape": info.clip_shape},
        )
        self.spool.open()
        self.decode_pool.start()
        self._batcher = Batcher(
            self.model.run,
            clip_shape=info.clip_shape,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_delay_ms / 1000,
            max_queue=s.max_queue,
            metrics=self.metrics,
            admitted=lambda: self.lifecycle.in_flight,
        )
        self._batcher.start()
        self._warm_up_task = asyncio.create_task(self._warm_up(), name="warm-up")

    async def _warm_up(self) -> None:
        try:
            await asyncio.gather(
                self.decode_pool.warm_up(),
                self.batcher.warm_up(warm_up_sizes(self.settings.max_batch_size)),
            )
        except Exception as err:
            log.exception("warm-up failed")
            self.lifecycle.mark_failed(f"warm-up failed: {err!r}")
            return
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
        if self._batcher is not None:
            await self._batcher.stop()
        await asyncio.to_thread(self.decode_pool.close)
        self.spool.close()
        self.lifecycle.mark_stopped()
