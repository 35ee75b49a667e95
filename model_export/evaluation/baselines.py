"""Baselines and checks the LSTM is compared with: an SVM, shuffled frames, other sets.

The SVM is fitted on the LSTM model's own frame-encoder features mean-pooled
over time; shuffled frames keep each clip's content and destroy its order.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from model_export.data.dataset import VideoDataset
from model_export.data.store import Rows
from model_export.evaluation.scores import score
from model_export.evaluation.svm import extract_features, fit_svm, predict
from model_export.nets.classifier import VideoClassifier
from model_export.train import evaluate


def shuffled_frames(clips: Rows, seed: int, *, first: int = 0) -> npt.NDArray[np.uint8]:
    """Each ``(T, H, W, 3)`` clip with its frames in a random order (seeded per row;
    ``first`` numbers the first clip), all at once."""
    return ShuffledFrames(clips, seed, first=first)[:]


class ShuffledFrames:
    """``(N, T, ...)`` rows with each clip's frames in a random order, drawn per row (the
    same whatever the batches), read lazily: ``[i:j]`` -> ``(j - i, T, ...)``."""

    def __init__(self, clips: Rows, seed: int, *, first: int = 0) -> None:
        self.clips, self.seed, self.first = clips, seed, first
        self.shape = clips.shape

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: slice) -> npt.NDArray[np.uint8]:
        rows = range(*index.indices(len(self.clips)))
        rows = range(rows.start + self.first, rows.stop + self.first, rows.step)
        batch = np.asarray(self.clips[index])
        return np.stack(
            [
                clip[np.random.default_rng((self.seed, row)).permutation(len(clip))]
                for row, clip in zip(rows, batch, strict=True)
            ]
        )


def score_model(
    model: VideoClassifier,
    clips: Rows,
    targets: npt.NDArray[np.int64],
    labels: tuple[str, ...],
) -> dict[str, Any]:
    return score(targets, evaluate(model, clips, targets).predictions, labels).as_dict()


def svm_baseline(
    encoder_of: VideoClassifier,
    data: VideoDataset,
    others: dict[str, VideoDataset],
    *,
    test_clips: Rows,
    test_targets: npt.NDArray[np.int64],
    seed: int,
) -> dict[str, Any]:
    train_clips, train_targets = data.view("train", serving=True)
    svm = fit_svm(extract_features(encoder_of, train_clips), train_targets, seed=seed)
    features = extract_features(encoder_of, test_clips)
    start = time.perf_counter()
    predictions = predict(svm, features)
    predict_ms = 1000 * (time.perf_counter() - start) / max(len(features), 1)
    entry: dict[str, Any] = {
        "test": score(test_targets, predictions, data.labels).as_dict(),
        "parameters": int(sum(np.size(c) for c in (svm[-1].coef_, svm[-1].intercept_))),
        "predict_ms_per_clip": predict_ms,
        "extra": {},
        "note": "Linear SVM on the LSTM model's per-step inputs, mean-pooled over time.",
    }
    for name, other in others.items():
        clips, targets = other.view("all", serving=True)
        predicted = predict(svm, extract_features(encoder_of, clips))
        entry["extra"][name] = score(targets, predicted, data.labels).as_dict()
    return entry
