"""The idiomatic server: what a competent engineer writes in a day.

The whole clip is decoded in one sequential PyAV pass that keeps only the T
sampled frames, each scaled by FFmpeg (bilinear) straight to the model's size;
decoding runs in a thread pool (one thread per core) off the event loop, and
a small batcher gathers clips from concurrent requests into one ONNX Runtime
run (up to 8 clips, 5 ms), as the service does.

    python -m bench.idiomatic_server --model models/vidlstm.onnx --port 8101
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import FastAPI, File, UploadFile

from bench.baseline import OnnxModel, load, sampled_clip, serve

MAX_BATCH = 8
MAX_DELAY_S = 0.005
Clip = npt.NDArray[np.uint8]


def decode(model: OnnxModel, data: bytes) -> Clip:
    """The whole clip in one pass, the sampled frames scaled bilinear."""
    return sampled_clip(model, data, stop_after_last=False, interpolation="BILINEAR")


class Batcher:
    """Clips from concurrent requests share one ONNX Runtime run."""

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.queue: asyncio.Queue[tuple[Clip, asyncio.Future[Any]]] = asyncio.Queue()
        self.runner = ThreadPoolExecutor(max_workers=1)

    async def submit(self, clip: Clip) -> npt.NDArray[np.float32]:
        future: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        await self.queue.put((clip, future))
        return await future

    async def loop(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = asyncio.get_running_loop().time() + MAX_DELAY_S
            while len(batch) < MAX_BATCH:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), max(timeout, 0)))
                except TimeoutError:
                    break
            frames = np.stack([clip for clip, _ in batch])
            run = functools.partial(self.model.session.run, None, {"frames": frames})
            (probs,) = await asyncio.get_running_loop().run_in_executor(self.runner, run)
            for (_, future), row in zip(batch, probs, strict=True):
                future.set_result(row)


def create_app(model_path: Path) -> FastAPI:
    model = load(model_path)
    decoders = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    batcher = Batcher(model)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.loop())
        yield
        task.cancel()

    app = FastAPI(title="idiomatic video classifier", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/classify")
    async def classify(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        data = await file.read()
        clip = await asyncio.get_running_loop().run_in_executor(decoders, decode, model, data)
        return model.answer(await batcher.submit(clip))

    return app


if __name__ == "__main__":
    serve(create_app, "idiomatic video classifier (benchmark baseline)")
