"""Train the temporal head on cached features: ``train_one_epoch``, ``evaluate``, ``fit``.

A training batch is built from the feature cache the way
:func:`~model_export.data.augment.augment_batch` builds one from decoded
clips: temporal jitter picks one of each three frames per segment, time
reversal reverses the picks, a spatial mirror takes the mirrored frames'
features, and every mirror permutes the target
(:func:`~model_export.data.augment.mirror_targets`). Evaluation reads the
serving frames' features. Seeded, AdamW with a one-cycle schedule, early
stopping on validation accuracy, on any device, resumable: the loop of
:mod:`model_export.epochs`.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch

from model_export.data.augment import AugmentConfig, mirror_targets
from model_export.data.features import PLAIN, Features, Flip, FrameFeatures
from model_export.device import device_of, upload
from model_export.epochs import (
    Batch,
    Evaluation,
    History,
    TrainConfig,
    batch_order,
    evaluation_of,
    run_epochs,
    train_batches,
)
from model_export.nets.head import TemporalHead
from model_export.resume import digest
from model_export.stepper import Stepper
from service.media.timestamps import jittered_indices

log = logging.getLogger(__name__)

Rows = npt.NDArray[np.int64]
Targets = npt.NDArray[np.int64]


def sample_batch(
    features: FrameFeatures,
    rows: Rows,
    targets: Targets,
    *,
    augment: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B,)`` rows of the data set (sorted: each mirror's rows are read in runs) and their
    targets -> ``(B, T, F)`` float32 features, ``(B,)`` targets after the mirrors."""
    frames = features.views[PLAIN].shape[1]
    picks = np.stack(
        [
            jittered_indices(frames, augment.num_frames, rng, spread=augment.jitter_spread)
            for _ in rows
        ]
    )
    mirrored_targets, mirrored = mirror_targets(torch.from_numpy(targets), augment, rng)
    picks[mirrored["time"]] = picks[mirrored["time"], ::-1]
    batch = np.empty((len(rows), augment.num_frames, features.feature_dim), dtype=np.float32)
    for h, v in ((False, False), (True, False), (False, True), (True, True)):
        chosen = (mirrored["horizontal"] == h) & (mirrored["vertical"] == v)
        if chosen.any():
            clips = np.asarray(features.views[Flip(h, v)][rows[chosen]])  # (k, 3T, F)
            batch[chosen] = np.take_along_axis(clips, picks[chosen][:, :, None], axis=1)
    return torch.from_numpy(batch), mirrored_targets


def train_one_epoch(
    head: TemporalHead,
    features: FrameFeatures,
    rows: Rows,
    targets: Targets,
    *,
    step: Stepper,
    augment: AugmentConfig,
    rng: np.random.Generator,
    config: TrainConfig,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over the training rows in a seeded order; returns loss, accuracy."""
    head.train()
    batches = batch_order(len(rows), config.batch_size, rng)

    def build(idx: npt.NDArray[np.int64]) -> Batch:
        return sample_batch(features, rows[idx], targets[idx], augment=augment, rng=rng)

    return train_batches(head.logits, build, batches, step=step, config=config, desc=desc)


@torch.no_grad()
def evaluate(
    head: TemporalHead, feats: Features, targets: Targets, *, batch_size: int = 256
) -> Evaluation:
    """The head on ``(N, T, F)`` serving-frame features: NLL, accuracy, probabilities
    (computed on the head's device, in full precision)."""
    head.eval()
    device = device_of(head)
    probs = [
        head(upload(torch.from_numpy(np.ascontiguousarray(feats[i : i + batch_size])), device))
        .float()
        .cpu()
        for i in range(0, len(feats), batch_size)
    ]
    return evaluation_of(probs, targets, head.config.num_classes)


def fit(
    head: TemporalHead,
    features: FrameFeatures,
    train: tuple[Rows, Targets],
    val: tuple[Features, Targets],
    *,
    augment: AugmentConfig,
    config: TrainConfig,
    name: str = "head",
    data_key: str = "",
) -> History:
    """Train ``head`` in place on the ``train`` rows' cached features, early-stopping on
    ``val`` (serving-frame features); leaves the best weights in ``head`` (on the CPU).
    ``data_key`` joins the features' key, rows and targets in what a resumed run must
    match."""

    def one_epoch(step: Stepper, rng: np.random.Generator, desc: str) -> tuple[float, float]:
        return train_one_epoch(
            head, features, *train, step=step, augment=augment, rng=rng, config=config, desc=desc
        )

    return run_epochs(
        head,
        one_epoch,
        lambda: evaluate(head, *val),
        count=len(train[0]),
        config=config,
        name=name,
        data_key=digest(data_key, features.key, *train, val[0].shape, val[1], augment),
    )
