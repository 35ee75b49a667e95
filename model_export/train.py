"""Train the CNN: ``train_one_epoch``, ``evaluate``, ``fit`` on the shared epoch loop
(:mod:`model_export.epochs`) — seeded, early-stopped, resumable.

Training batches are cached ``(N, 3T, H, W, 3) uint8`` clips, augmented on
the fly (temporal jitter picks the frames; on CUDA in a background thread
while the batch before trains); evaluation runs the model as served: ``(N, T, H, W, 3)
uint8`` serving frames in, probabilities out. Training runs on
``TrainConfig.device`` (mixed precision on CUDA) and hands the model back on
the CPU. With ``TrainConfig.state_path`` each epoch leaves a training state
that ``TrainConfig.resume`` continues from (:mod:`model_export.resume`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from model_export.data.augment import AugmentConfig, augment_batch
from model_export.data.store import Rows
from model_export.device import device_of, upload
from model_export.epochs import (
    Batch,
    Evaluation,
    History,
    Indices,
    Targets,
    TrainConfig,
    batch_order,
    evaluation_of,
    run_epochs,
    train_batches,
)
from model_export.nets.classifier import VideoClassifier
from model_export.resume import digest
from model_export.stepper import Stepper

log = logging.getLogger(__name__)

Clips = Rows  # (N, S, H, W, 3) uint8: an array or a view that reads a batch of rows at a time


def train_one_epoch(
    model: VideoClassifier,
    clips: Clips,
    targets: Targets,
    *,
    step: Stepper,
    augment: AugmentConfig,
    rng: np.random.Generator,
    config: TrainConfig,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over ``(N, 3T, H, W, 3) uint8`` clips in a seeded order; returns loss, accuracy."""
    model.train()
    batches = batch_order(len(clips), config.batch_size, rng)

    def build(idx: Indices) -> Batch:
        batch, target = torch.from_numpy(clips[idx]), torch.from_numpy(targets[idx])
        return augment_batch(batch, target, config=augment, rng=rng, planes=True)

    return train_batches(model.plane_logits, build, batches, step=step, config=config, desc=desc)


@torch.no_grad()
def evaluate(
    model: VideoClassifier, clips: Clips, targets: Targets, *, batch_size: int = 64
) -> Evaluation:
    """The model as served on ``(N, T, H, W, 3) uint8`` clips: NLL, accuracy, probabilities
    (computed on the model's device, in full precision)."""
    model.eval()
    device = device_of(model)
    probs = [
        model(upload(torch.from_numpy(np.ascontiguousarray(clips[i : i + batch_size])), device))
        .float()
        .cpu()
        for i in range(0, len(clips), batch_size)
    ]
    return evaluation_of(probs, targets, model.config.num_classes)


def fit(
    model: VideoClassifier,
    train: tuple[Clips, Targets],
    val: tuple[Clips, Targets],
    *,
    augment: AugmentConfig,
    config: TrainConfig,
    name: str = "model",
    data_key: str = "",
) -> History:
    """Train ``model`` in place on ``train`` (3T-frame clips), early-stopping on ``val``
    (T-frame serving clips); leaves the best weights in ``model`` (on the CPU) and returns
    the curves. ``data_key`` (the data set's fingerprint) joins the shapes and targets in
    what a resumed run must match."""

    def one_epoch(step: Stepper, rng: np.random.Generator, desc: str) -> tuple[float, float]:
        return train_one_epoch(
            model, *train, step=step, augment=augment, rng=rng, config=config, desc=desc
        )

    return run_epochs(
        model,
        one_epoch,
        lambda: evaluate(model, *val),
        count=len(train[0]),
        config=config,
        name=name,
        data_key=digest(data_key, train[0].shape, train[1], val[0].shape, val[1], augment),
    )
