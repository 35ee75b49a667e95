"""Batch & infer: clips from all requests share ONNX Runtime runs.

One bounded queue feeds one loop. A batch opens with the first clip waiting
and closes when it holds ``max_batch_size`` clips or ``max_delay`` has passed
since that first clip was queued (mosec's ``get_batch``), or at once when no
admitted request is still on its way to the batcher (``admitted``: a lone
request does not wait out the delay for company that cannot come). Each batch is one
ONNX Runtime run in a dedicated thread; its outputs must match its inputs in
number, and each result or error goes back to its own caller. A clip is
checked before it may join a batch, and if a batched run fails anyway its
clips are run one by one, so only the culprit fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.core.errors import DrainingError, InternalError, OverloadedError, VidlstmError
from service.core.metrics import Metrics

log = logging.getLogger(__name__)

Clip = npt.NDArray[np.uint8]  # (T, H, W, 3)
Probabilities = npt.NDArray[np.float32]  # (C,)
RunBatch = Callable[[npt.NDArray[np.uint8]], npt.NDArray[np.float32]]  # (B,T,H,W,3)->(B,C)


@dataclass(frozen=True, slots=True)
class Inferred:
    """One clip's probabilities and when its run started and ended (monotonic seconds)."""

    probabilities: Probabilities
    started: float
    finished: float
    batch_size: int


@dataclass(slots=True)
class _Pending:
    clip: Clip
    future: asyncio.Future[Inferred]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Gathers clips into batches for ``run`` and hands each result back."""

    def __init__(
        self,
        run: RunBatch,
        *,
        clip_shape: tuple[int, ...],
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        metrics: Metrics,
        admitted: Callable[[], int] | None = None,
    ) -> None:
        """``admitted``: requests admitted and not yet answered (the lifecycle's count,
        from the moment a request's headers are in). Those not waiting here may still
        bring clips; with none, a batch runs at once. Unset: a batch always waits."""
        self._run = run
        self._admitted = admitted
        self._submitters = 0  # requests whose clips are queued or running here
        self.clip_shape = clip_shape
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_queue)
        # One thread: runs never overlap, ONNX Runtime parallelises inside a run.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._task: asyncio.Task[None] | None = None

    @property
    def free_slots(self) -> int:
        return self.max_queue - self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="batcher")

    async def stop(self) -> None:
        """Stop the loop; clips still waiting are failed as draining."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(DrainingError("the server stopped before inference"))
        self._metrics.queue_depth.set(0)
        self._executor.shutdown(wait=True)

    async def submit(self, clips: Sequence[Clip], *, awaited: bool = True) -> list[Inferred]:
        """Queue all of one request's clips at once (or none: 503) and await their results.

        ``awaited``: the caller is one of those ``admitted`` counts (a job is not)."""
        for clip in clips:
            self._check(clip)
        if len(clips) > self.free_slots:
            raise OverloadedError("the inference queue is full; retry shortly")
        loop = asyncio.get_running_loop()
        pending = [_Pending(clip, loop.create_future()) for clip in clips]
        for item in pending:
            self._queue.put_nowait(item)
        self._metrics.queue_depth.set(self._queue.qsize())
        self._submitters += awaited
        try:
            return list(await asyncio.gather(*(item.future for item in pending)))
        finally:
            self._submitters -= awaited
            for item in pending:  # the caller went away or a sibling failed
                item.future.cancel()

    def _none_coming(self) -> bool:
        """No admitted request is still uploading or decoding: no clip can join."""
        if self._admitted is None:
            return False
        return self._admitted() <= self._submitters

    async def warm_up(self, sizes: Sequence[int]) -> None:
        """One run at each batch size, so the first requests pay no allocation or tuning."""
        for size in sizes:
            batch = np.zeros((size, *self.clip_shape), dtype=np.uint8)
            await asyncio.get_running_loop().run_in_executor(self._executor, self._run, batch)

    def _check(self, clip: Clip) -> None:
        if clip.dtype != np.uint8 or clip.shape != self.clip_shape:
            raise InternalError(
                f"clip {clip.dtype}{clip.shape} does not fit the model's {self.clip_shape}"
            )

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            self._metrics.queue_depth.set(self._queue.qsize())
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            try:
                await self._infer(batch)
            except asyncio.CancelledError:  # stopped mid-batch: nobody may wait forever
                _fail(batch, DrainingError("the server stopped before inference"))
                raise
            except Exception:  # the loop must outlive any one batch
                log.exception("batch failed outside inference")
                _fail(batch, InternalError("inference failed"))

    async def _next_batch(self) -> list[_Pending]:
        """Wait for a first clip, then gather more until full or its deadline passes."""
        first = await self._queue.get()
        batch = [first]
        deadline = first.queued_at + self.max_delay_s
        while len(batch) < self.max_batch_size:
            if self._queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._none_coming():
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._queue.get())
                except TimeoutError:
                    break
            else:
                batch.append(self._queue.get_nowait())
        return batch

    async def _infer(self, batch: list[_Pending]) -> None:
        try:
            results = await self._run_batch([item.clip for item in batch])
        except Exception as err:
            if len(batch) == 1:
                _fail(batch, _wrap(err))
                return
            log.warning("batched run of %d failed (%r); retrying one by one", len(batch), err)
            for item in batch:
                await self._infer([item])
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _run_batch(self, clips: list[Clip]) -> list[Inferred]:
        frames = np.stack(clips)
        started = time.perf_counter()
        probs, cpu_s = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._timed_run, frames
        )
        finished = time.perf_counter()
        if probs.ndim != 2 or probs.shape[0] != len(clips):
            raise InternalError(f"{len(clips)} clips in, {probs.shape} probabilities out")
        self._metrics.onnx_runs.inc()
        self._metrics.clips.inc(len(clips))
        self._metrics.batch_size.observe(len(clips))
        self._metrics.inference_seconds.observe(finished - started)
        self._metrics.inference_cpu_seconds.inc(cpu_s)
        return [Inferred(row, started, finished, len(clips)) for row in probs]

    def _timed_run(self, frames: Clip) -> tuple[npt.NDArray[np.float32], float]:
        """The run, and the CPU time it took on this thread (wall time overstates it on
        a busy machine: the thread waits for a core)."""
        started = time.thread_time()
        probs = self._run(frames)
        return probs, time.thread_time() - started


def _fail(batch: list[_Pending], err: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(err)


def _wrap(err: Exception) -> VidlstmError:
    if isinstance(err, VidlstmError):
        if isinstance(err, InternalError):
            log.error("inference failed: %s", err)
        return err
    log.error("inference failed", exc_info=err)
    return InternalError("inference failed")
