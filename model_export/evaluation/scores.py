"""Metrics: how good and how fast a model is (scores, confusion, ONNX Runtime latency)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

LATENCY_BATCHES = (1, 8)


@dataclass
class Scores:
    """One model's results on one labelled set; ``confusion[i][j]``: true i, predicted j."""

    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    confusion: list[list[int]]
    count: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelResult:
    """Everything the report says about one model."""

    name: str
    test: Scores
    parameters: int = 0
    ms_per_clip: dict[int, float] = field(default_factory=dict)  # batch size -> ms per clip
    history: dict[str, Any] | None = None
    extra: dict[str, Scores] = field(default_factory=dict)  # e.g. "alt", "shuffled"
    note: str = ""


def score(
    targets: npt.NDArray[np.int64], predictions: npt.NDArray[np.int64], labels: Sequence[str]
) -> Scores:
    """Accuracy, macro and per-class F1 and the confusion matrix of ``(N,)`` class ids."""
    ids = list(range(len(labels)))
    per_class = f1_score(targets, predictions, labels=ids, average=None, zero_division=0)
    return Scores(
        accuracy=float(accuracy_score(targets, predictions)),
        macro_f1=float(
            f1_score(targets, predictions, labels=ids, average="macro", zero_division=0)
        ),
        per_class_f1={name: round(float(f), 4) for name, f in zip(labels, per_class, strict=True)},
        confusion=confusion_matrix(targets, predictions, labels=ids).tolist(),
        count=len(targets),
    )


def accuracy_interval(accuracy: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% at ``z=1.96``) of an accuracy measured on ``count``
    clips: how far the figure could move on another draw of the same size."""
    if count <= 0:
        return (0.0, 1.0)
    z2 = z * z / count
    centre = (accuracy + z2 / 2) / (1 + z2)
    half = z / (1 + z2) * np.sqrt(accuracy * (1 - accuracy) / count + z2 / (4 * count))
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def onnx_latency(
    path: Path,
    *,
    batch_sizes: Sequence[int] = LATENCY_BATCHES,
    threads: int = 2,
    repeats: int = 20,
    seed: int = 0,
) -> dict[int, float]:
    """Median ms per clip of ONNX Runtime (CPU) on random clips of the file's geometry."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    t, h, w = (int(meta[f"vidlstm.{k}"]) for k in ("num_frames", "height", "width"))
    (inp,) = session.get_inputs()
    rng = np.random.default_rng(seed)
    result: dict[int, float] = {}
    for batch in batch_sizes:
        clips = rng.integers(0, 256, size=(batch, t, h, w, 3), dtype=np.uint8)
        for _ in range(3):
            session.run(None, {inp.name: clips})
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, {inp.name: clips})
            times.append(time.perf_counter() - start)
        result[batch] = round(1000 * statistics.median(times) / batch, 3)
    return result
