"""Floor: what no server can avoid, measured in-process with no HTTP.

1. Decode & sample: the service's own worker function
   (:func:`service.pipeline.decode_pool.decode_job`, same settings) over the workload in
   one process per core; each worker keeps its clips, so nothing is copied back.
2. Inference: ONNX Runtime alone on real clips at the service's batch size,
   the better of the service's own session and one single-threaded session
   run per core at once (the cheapest way any server could run it).

Both use every core, so one video costs ``1/D + 1/I`` seconds of the whole
machine and the floor throughput is ``1 / (1/D + 1/I)`` videos per second.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.media.decode_job import DecodeJob, decode_job
from service.pipeline.inference import Model, load_model

MIN_INFER_S = 1.0  # run inference at least this long for a stable rate


@dataclass(frozen=True, slots=True)
class Floor:
    decode_videos_per_s: float
    infer_clips_per_s: float
    decoded_frames_per_video: float

    @property
    def videos_per_s(self) -> float:
        return 1.0 / (1.0 / self.decode_videos_per_s + 1.0 / self.infer_clips_per_s)


def _decode_one(args: tuple[str, DecodeJob]) -> int:
    path, job = args
    return decode_job(path, job).decoded_frames


def _ready() -> bool:
    return True


class DecodeFloor:
    """A pool of one process per core, started once, that decodes like the service."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        # Start every worker and import the decoder before anything is timed.
        for future in [self._pool.submit(_ready) for _ in range(workers)]:
            future.result()

    def run(self, paths: Sequence[Path], job: DecodeJob) -> tuple[float, float]:
        """(videos per second, decoded frames per video) over ``paths``."""
        start = time.perf_counter()
        counts = list(self._pool.map(_decode_one, [(str(p), job) for p in paths], chunksize=1))
        elapsed = time.perf_counter() - start
        return len(paths) / elapsed, float(np.mean(counts))

    def close(self) -> None:
        self._pool.shutdown()


def infer_rate(
    model: Model, clips: npt.NDArray[np.uint8], *, batch: int, callers: int = 1
) -> float:
    """Clips per second of ``model.run`` on batches of ``batch`` clips from ``clips``,
    with ``callers`` threads running batches at once (ONNX Runtime releases the GIL)."""
    reps = -(-batch // len(clips))
    frames = np.ascontiguousarray(np.concatenate([clips] * reps)[:batch])
    model.run(frames)  # allocation and any tuning happen on the first run
    start = time.perf_counter()

    def call() -> int:
        runs = 0
        while runs < 8 or time.perf_counter() - start < MIN_INFER_S:
            model.run(frames)
            runs += 1
        return runs

    with ThreadPoolExecutor(callers) as pool:
        runs = sum(pool.map(lambda _: call(), range(callers)))
    return runs * batch / (time.perf_counter() - start)


def best_infer_rate(
    model: Model,
    path: Path,
    clips: npt.NDArray[np.uint8],
    *,
    batch: int,
    cores: int,
    cuda_tf32: bool = False,
) -> float:
    """The cheaper of: the service's own session, or one single-threaded run per core.

    ``cuda_tf32`` as the service's session was opened, so both compute alike.
    """
    single = load_model(path, providers=model.providers, intra_op_threads=1, cuda_tf32=cuda_tf32)
    return max(
        infer_rate(model, clips, batch=batch),
        infer_rate(single, clips, batch=batch, callers=cores),
    )


def sample_clips(paths: Sequence[Path], job: DecodeJob, count: int) -> npt.NDArray[np.uint8]:
    """``(count, T, H, W, 3)`` real clips from the first videos, for inference."""
    return np.stack([decode_job(str(p), job).clip for p in paths[:count]])
