"""What the two baseline servers share: the model read with plain ONNX Runtime, the
JSON answer and the command line. Written as their authors would: no batcher of ours,
no decode pool, no limits; just enough to classify the same files with the same model.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI


@dataclass(frozen=True, slots=True)
class OnnxModel:
    session: ort.InferenceSession
    labels: list[str]
    num_frames: int
    height: int
    width: int

    def answer(self, probs: npt.NDArray[np.float32]) -> dict[str, Any]:
        """The response body: top-5 labels and every probability."""
        order = np.argsort(-probs)[:5]
        return {
            "top": [{"label": self.labels[i], "score": float(probs[i])} for i in order],
            "probabilities": {label: float(p) for label, p in zip(self.labels, probs, strict=True)},
        }


def sampled_clip(
    model: OnnxModel, data: bytes, *, stop_after_last: bool, interpolation: str | None = None
) -> npt.NDArray[np.uint8]:
    """``(T, H, W, 3) uint8``: the frames nearest T evenly spaced positions, in one
    sequential PyAV pass (to the end, or ``stop_after_last`` sample), each scaled by
    FFmpeg to the model's size."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        seconds = (container.duration or 0) / av.time_base
        total = stream.frames or int(seconds * float(stream.average_rate or 25))
        picks = ((np.arange(model.num_frames) + 0.5) * total / model.num_frames).astype(int)
        wanted = {int(p): k for k, p in enumerate(picks)}
        clip = np.zeros((model.num_frames, model.height, model.width, 3), dtype=np.uint8)
        width, height = model.width, model.height
        last = None
        for i, frame in enumerate(container.decode(stream)):
            last = frame
            if i in wanted:
                clip[wanted.pop(i)] = frame.to_ndarray(
                    width=width, height=height, format="rgb24", interpolation=interpolation
                )
            if stop_after_last and not wanted:
                break
        for k in wanted.values():  # the container over-counted its frames
            if last is not None:
                clip[k] = last.to_ndarray(width=width, height=height, format="rgb24")
    return clip


def load(path: Path) -> OnnxModel:
    """The model file with ONNX Runtime's defaults (CPU, every core)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    return OnnxModel(
        session=session,
        labels=list(json.loads(meta["vidlstm.labels"])),
        num_frames=int(meta["vidlstm.num_frames"]),
        height=int(meta["vidlstm.height"]),
        width=int(meta["vidlstm.width"]),
    )


def serve(make_app: Callable[[Path], FastAPI], description: str) -> None:
    """``--model PATH --port N``: build the app and run it with uvicorn."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(make_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
