"""A model whose inference costs next to nothing, for the ingress ceiling.

With the tiny clips decoding is almost free; with the real model each clip would
still cost ~5 ms of ONNX Runtime on a CPU core, and the figure would measure
inference. This file keeps the service's contract (``frames`` ``(B, T, H, W, 3)
uint8`` -> ``probabilities`` ``(B, C)``, the ``vidlstm.*`` metadata) with a graph
that only averages the pixels and scores the mean colour, so what is left to
measure is the HTTP front: upload, spool, admission, hand-offs and the answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.media.timestamps import SAMPLING_POLICY

LABELS = ("dark", "red", "green", "blue")
GEOMETRY = (8, 64, 64)  # the tiny clips' own size: resizing costs nothing either


def write(path: Path) -> Path:
    """The model at ``path`` (made once; the same bytes every time)."""
    if path.exists():
        return path
    frames, height, width = GEOMETRY
    weights = np.array([[-1, 1, 0, 0], [-1, 0, 1, 0], [-1, 0, 0, 1]], dtype=np.float32) / 255
    nodes = [
        helper.make_node("Cast", ["frames"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels", "axes"], ["colour"], keepdims=0),
        helper.make_node("MatMul", ["colour", "weights"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "ingress",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["B", *GEOMETRY, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["B", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "axes"),
            numpy_helper.from_array(weights, "weights"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    meta = {
        "labels": json.dumps(list(LABELS)),
        "num_frames": str(frames),
        "height": str(height),
        "width": str(width),
        "sampling": SAMPLING_POLICY,
        "name": "ingress-stand-in",
        "version": "1",
        "data_fingerprint": "none",
        "metrics": "{}",
        "created": "2026-12-06T00:00:00Z",
    }
    helper.set_model_props(model, {f"vidlstm.{k}": v for k, v in meta.items()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
