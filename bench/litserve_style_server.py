"""A LitServe-style server: the shape LitServe gives the same job, written in the repository.

LitServe itself is not a dependency. Its shape is: an HTTP process that hands each
request to inference worker processes over queues; each worker gathers up to
``MAX_BATCH`` requests or waits ``BATCH_TIMEOUT_S`` after the first, runs
``decode_request`` on each (here plain PyAV, decoding every frame up to the last
sampled one, with PyAV's default threading), stacks them and runs the model
once. ``WORKERS`` workers per device, each with its own ONNX Runtime session
(the defaults: every core). The settings are the ones the issue measured
LitServe 0.2.19 with (batch 8 / 10 ms, 2 workers).

    python -m bench.litserve_style_server --model models/vidlstm.onnx --port 8102
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import queue
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, HTTPException, Request
from starlette.datastructures import UploadFile

from bench.baseline import OnnxModel, load, sampled_clip, serve

MAX_BATCH = 8
BATCH_TIMEOUT_S = 0.010
WORKERS = 2
_SPAWN = multiprocessing.get_context("spawn")
Task = tuple[int, bytes]
Answer = tuple[int, dict[str, Any] | str]


def decode_request(model: OnnxModel, data: bytes) -> npt.NDArray[np.uint8]:
    """Plain PyAV: every frame decoded up to the last of T evenly spaced ones."""
    return sampled_clip(model, data, stop_after_last=True)


def worker(model_path: Path, tasks: Any, answers: Any) -> None:
    """One inference worker: gather a batch, decode each request, one model run."""
    model = load(model_path)
    while True:
        batch: list[Task] = [tasks.get()]
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        while len(batch) < MAX_BATCH:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(tasks.get(timeout=left))
            except queue.Empty:
                break
        clips, ids = [], []
        for task_id, data in batch:
            try:
                clips.append(decode_request(model, data))
                ids.append(task_id)
            except (av.FFmpegError, ValueError, IndexError) as err:
                answers.put((task_id, f"cannot decode: {err}"))
        if clips:
            (probs,) = model.session.run(None, {"frames": np.stack(clips)})
            for task_id, row in zip(ids, probs, strict=True):
                answers.put((task_id, model.answer(row)))


def create_app(model_path: Path) -> FastAPI:
    tasks: Any = _SPAWN.Queue()
    answers: Any = _SPAWN.Queue()
    waiting: dict[int, asyncio.Future[dict[str, Any] | str]] = {}
    ids = itertools.count()

    def deliver(loop: asyncio.AbstractEventLoop) -> None:
        while True:
            task_id, answer = answers.get()
            future = waiting.pop(task_id, None)
            if future is not None:
                loop.call_soon_threadsafe(future.set_result, answer)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers = [
            _SPAWN.Process(target=worker, args=(model_path, tasks, answers), daemon=True)
            for _ in range(WORKERS)
        ]
        for process in workers:
            process.start()
        loop = asyncio.get_running_loop()
        threading.Thread(target=deliver, args=(loop,), daemon=True).start()
        yield
        for process in workers:
            process.kill()

    app = FastAPI(title="LitServe-style video classifier", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/classify")
    async def classify(request: Request) -> Any:
        # As LitServe's HTTP process does: the form is parsed there, the file read whole.
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(status_code=400, detail="no 'file' field")
        data = await upload.read()
        task_id = next(ids)
        future: asyncio.Future[dict[str, Any] | str] = asyncio.get_running_loop().create_future()
        waiting[task_id] = future
        tasks.put((task_id, data))
        answer = await future
        if isinstance(answer, str):
            raise HTTPException(status_code=400, detail=answer)
        return answer

    return app


if __name__ == "__main__":
    serve(create_app, "LitServe-style video classifier (benchmark baseline)")
