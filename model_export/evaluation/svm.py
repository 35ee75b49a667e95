"""SVM baseline: a linear SVM on a classifier's per-step inputs mean-pooled over time.

The inputs are exactly what the LSTM gets at each step (by default from the
LSTM model itself, whose encoder learnt what matters in a frame: where the
object is, how big, how turned; and the motion stream when it has one).
Mean pooling forgets order, so this baseline shows what the same inputs
achieve without memory of it.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from model_export.data.store import Rows
from model_export.nets.classifier import VideoClassifier

log = logging.getLogger(__name__)

Features = npt.NDArray[np.float32]


class PooledFeatures(nn.Module):
    """``(N, T, H, W, 3) uint8 -> (N, S) float32``: a classifier's per-step inputs,
    time-averaged."""

    def __init__(self, model: VideoClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.step_inputs(frames).mean(dim=1)


@torch.no_grad()
def extract_features(model: VideoClassifier, clips: Rows, *, batch_size: int = 64) -> Features:
    """Mean-pooled per-step inputs of ``(N, T, H, W, 3) uint8`` clips: ``(N, S) float32``."""
    pooled = PooledFeatures(model).eval()
    chunks = [
        pooled(torch.from_numpy(np.ascontiguousarray(clips[i : i + batch_size]))).numpy()
        for i in range(0, len(clips), batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def fit_svm(
    features: Features, targets: npt.NDArray[np.int64], *, c: float = 1.0, seed: int = 0
) -> Pipeline:
    """Standardise, then a one-vs-rest linear SVM: ``(N, F)`` features -> class ids."""
    svm = make_pipeline(
        StandardScaler(), LinearSVC(C=c, max_iter=20_000, random_state=seed, dual="auto")
    )
    svm.fit(features, targets)
    log.info("svm: train accuracy %.3f", float(svm.score(features, targets)))
    return svm


def predict(svm: Pipeline, features: Features) -> npt.NDArray[np.int64]:
    return np.asarray(svm.predict(features), dtype=np.int64)
