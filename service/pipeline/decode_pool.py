"""Decode & sample in a pool of worker processes, behind ``await pool.decode(path, job)``.

A decoder is native code fed with strangers' files: it may crash, hang or eat
memory. Each decode runs in a pebble worker process with a time limit, so a
crash or a hang fails only its own request (422 ``decoder-crashed`` / 504) and
pebble starts a fresh worker. Workers are spawned, not forked: the serving
process has threads (ONNX Runtime, the event loop's executors) that a fork
would copy mid-flight. The clips come back through shared memory
(:mod:`service.pipeline.clip_block`), not pickled through pebble's pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelledError
from pathlib import Path

from pebble import ProcessExpired, ProcessPool

from service.core.errors import (
    DecodeFailedError,
    DecoderCrashedError,
    DecodeTimeoutError,
    InternalError,
    OverloadedError,
    VidlstmError,
)
from service.media.decode_job import DecodedVideo, DecodeJob, decode_job
from service.pipeline import clip_block
from service.pipeline.clip_block import ClipBlocks, ClipsInBlock

log = logging.getLogger(__name__)

# Tests only: called with the upload's path in the worker before each decode.
# A module-level function, pickled by reference into the spawned workers.
DecodeHook = Callable[[str], None]
_hook: DecodeHook | None = None  # set in each worker by _init_worker
# A worker is replaced after this many decodes. Decoders' memory creeps up with
# the mix of sizes and codecs they see (allocator fragmentation, codec pools;
# bench/README.md, soak). A new worker's start-up is small beside 1000 decodes.
RECYCLE_AFTER_DECODES = 1000
# Decoders yield the CPU to the server process (see _init_worker).
WORKER_NICENESS = 10


def _decode_in_worker(path: str, job: DecodeJob, block: str | None) -> DecodedVideo | ClipsInBlock:
    if _hook is not None:
        _hook(path)
    decoded = decode_job(path, job)
    if block is None:
        return decoded
    try:
        return clip_block.write(Path(block), decoded)
    except OSError:
        # /dev/shm full, or the block gone: the server logs it, the pipe still works.
        return decoded


def ping() -> bool:
    """A no-op task: proves a worker has started and imported the decoder."""
    return True


def _init_worker(hook: DecodeHook | None) -> None:
    global _hook  # noqa: PLW0603 - per-process state set once by pebble's initializer
    # Ctrl-C reaches the whole process group; the parent drains and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Out of memory, the kernel kills the biggest process: the server with the
    # model, unless a decoder (the usual culprit, and replaced at once) comes first.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")
    # With every core decoding, the server's event loop (admitting, refusing with
    # 503, answering) and inference must still get a core the moment they need one.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    _hook = hook


class DecodePool:
    """Worker processes that turn an uploaded file into clips."""

    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float,
        hook: DecodeHook | None = None,
        on_restart: Callable[[str], None] = lambda cause: None,
        max_wait_s: float | None = None,
        queue_per_worker: int | None = None,
        block_dir: Path | None = clip_block.SHM_DIR,
    ) -> None:
        """``block_dir``: where the clips' shared-memory blocks go; None sends them through
        the pipe (as does a failure to create or fill a block)."""
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s
        self.queue_per_worker = queue_per_worker
        self.pending = 0  # decodes admitted: running or waiting for a worker
        self._decode_s: float | None = None  # recent decode time (moving average)
        self._hook = hook
        self._on_restart = on_restart
        self._pool: ProcessPool | None = None
        self._blocks = ClipBlocks(block_dir)

    @property
    def full(self) -> bool:
        """Whether a new decode would queue too deep or wait too long for a worker.

        Too deep: more than ``queue_per_worker`` decodes per worker already wait.
        Too long: the wait, estimated from the decodes ahead of it and recent
        decode times, exceeds ``max_wait_s``. With a worker free, never. A request
        refused here gets 503 at once: a load balancer retries it on another
        replica sooner than this one would start it, and a client learns when to
        come back (Retry-After), while the admitted ones keep their latency.
        """
        waiting = self.pending + 1 - self.workers  # the new decode's place in the queue
        if waiting <= 0:
            return False
        if self.queue_per_worker is not None and waiting > self.queue_per_worker * self.workers:
            return True
        if self.max_wait_s is None or self._decode_s is None:
            return False
        return waiting / self.workers * self._decode_s > self.max_wait_s

    def start(self) -> None:
        self._pool = ProcessPool(
            max_workers=self.workers,
            max_tasks=RECYCLE_AFTER_DECODES,
            initializer=_init_worker,
            initargs=(self._hook,),
            context=multiprocessing.get_context("spawn"),
        )

    async def warm_up(self) -> None:
        """Start every worker and let it import the decoder before traffic arrives."""
        pool = self._running_pool()
        futures = [asyncio.wrap_future(pool.schedule(ping)) for _ in range(self.workers)]
        await asyncio.gather(*futures)

    async def decode(
        self, path: Path, job: DecodeJob, *, timeout_s: float | None = None
    ) -> tuple[DecodedVideo, float]:
        """Decode & sample ``path`` in a worker; returns the clips and the seconds it took.

        :class:`OverloadedError` at once when it would wait too long (see :attr:`full`).
        ``timeout_s``: this decode's limit instead of the pool's (a job's long video).
        """
        if self.full:
            raise OverloadedError("every decode worker is busy; retry shortly")
        queued = self.pending >= self.workers
        job, spare = self.with_spare_core(job)
        self.pending += 1
        try:
            decoded, seconds = await self._decode(path, job, timeout_s or self.timeout_s)
        finally:
            self.pending -= 1
        if not queued and not spare:  # one decode's own time, on one core
            self._decode_s = (
                seconds if self._decode_s is None else 0.8 * self._decode_s + 0.2 * seconds
            )
        return decoded, seconds

    def with_spare_core(self, job: DecodeJob) -> tuple[DecodeJob, bool]:
        """``job`` as it runs now, and whether a core is spare: with a worker (and its
        core) that no other decode holds, the decode samples in two halves at once (the
        same frames, sooner: a lone request); under load, one core per decode."""
        spare = self.pending + 1 < self.workers
        if spare and job.halves is None:
            return dataclasses.replace(job, halves=True), True
        return job, spare

    async def _decode(
        self, path: Path, job: DecodeJob, timeout_s: float
    ) -> tuple[DecodedVideo, float]:
        start = time.perf_counter()
        block = self._blocks.new()
        try:
            result = await self._run(path, job, block, timeout_s)
            decoded = self._blocks.receive(result, block)
        finally:
            if block is not None:  # whatever happened: no block outlives its decode
                clip_block.remove(block)
        return decoded, time.perf_counter() - start

    async def _run(
        self, path: Path, job: DecodeJob, block: Path | None, timeout_s: float
    ) -> DecodedVideo | ClipsInBlock:
        future = self._running_pool().schedule(
            _decode_in_worker,
            args=(str(path), job, None if block is None else str(block)),
            timeout=timeout_s,
        )
        try:
            result: DecodedVideo | ClipsInBlock = await asyncio.wrap_future(future)
        except VidlstmError:
            raise
        except TimeoutError as err:
            self._restarted("timeout")
            raise DecodeTimeoutError(
                f"decoding took longer than {timeout_s:g} s and was stopped"
            ) from err
        except ProcessExpired as err:
            self._restarted("crash")
            raise DecoderCrashedError(
                f"the decoder process died ({_describe_exit(err.exitcode)}) on this file"
            ) from err
        except (FutureCancelledError, asyncio.CancelledError):
            # pebble kills a running task. Its worker may still write the block for a
            # moment after the caller removes it: to an orphaned file, freed as it dies.
            future.cancel()  # type: ignore[no-untyped-call]
            raise
        except FileNotFoundError as err:
            raise InternalError("the spooled upload disappeared before decoding") from err
        except Exception as err:
            # Whatever else a decoder throws on a client's file is the file's fault.
            log.warning(
                "decoder failed: %r", err, extra={"traceback": getattr(err, "traceback", None)}
            )
            raise DecodeFailedError("the decoder failed on this file") from err
        return result

    def close(self) -> None:
        """Stop the workers (those still decoding are killed)."""
        if self._pool is not None:
            self._pool.stop()  # type: ignore[no-untyped-call]
            self._pool.join(timeout=10)
            self._pool = None
        # Each decode removes its own block; this catches those of decodes the stop cut short.
        self._blocks.sweep()

    def _running_pool(self) -> ProcessPool:
        pool = self._pool
        if pool is None:
            raise InternalError("the decode pool is not running")
        if not pool.active:
            # pebble gives up on the whole pool when a worker dies while idle;
            # a fresh pool is cheaper than a server that can no longer decode.
            log.warning("decode pool broken; starting a new one")
            self._restarted("pool")
            pool.stop()  # type: ignore[no-untyped-call]
            # Reaping the old pool's threads and workers can block; not on the event loop.
            threading.Thread(target=pool.join, name="reap-decode-pool", daemon=True).start()
            self.start()
            assert self._pool is not None
            pool = self._pool
        return pool

    def _restarted(self, cause: str) -> None:
        log.warning("decode worker replaced", extra={"cause": cause})
        self._on_restart(cause)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            pass
    return f"exit code {code}"
