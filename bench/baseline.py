"""What the two baseline servers share: the model read with plain ONNX Runtime, the
JSON answer and the command line. Written as their authors would: no batcher of ours,
no decode pool, no limits; just enough to classify the same files with the same model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
