"""The naive server: what a typical tutorial has a user write.

Every frame is decoded, turned into a full-size RGB array and resized with
PIL (the "load the video as a list of preprocessed frames" step tutorials
start with), T of them are sampled, and each request runs the model on its
own (batch of one). The endpoint is a plain ``def``, so FastAPI runs it in its
thread pool: the charitable version of the tutorial (an ``async def`` would
serialise everything on the event loop). It holds every frame of a video, so
it only serves small clips.

    python -m bench.naive_server --model models/vidlstm.onnx --port 8100
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import av
import numpy as np
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from bench.baseline import OnnxModel, load, serve


def classify_video(model: OnnxModel, data: bytes) -> dict[str, Any]:
    size = (model.width, model.height)
    frames = []
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):  # preprocess every frame, as tutorials do
            image = Image.fromarray(frame.to_ndarray(format="rgb24"))
            frames.append(np.asarray(image.resize(size, Image.Resampling.BILINEAR)))
    picks = np.linspace(0, len(frames) - 1, model.num_frames).round().astype(int)
    clip = np.stack([frames[i] for i in picks])
    probs = model.session.run(None, {"frames": clip[None]})[0][0]
    return model.answer(probs)


def create_app(model_path: Path) -> FastAPI:
    app = FastAPI(title="naive video classifier")
    model = load(model_path)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/classify")
    def classify(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        return classify_video(model, file.file.read())

    return app


if __name__ == "__main__":
    serve(create_app, "naive video classifier (benchmark baseline)")
