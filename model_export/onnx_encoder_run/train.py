"""Train the temporal head on cached features: ``train_one_epoch``, ``evaluate``, ``fit``.

A training batch is built from the feature cache the way
:func:`~model_export.data.augment.augment_batch` builds one from decoded
clips: temporal jitter picks one of each three frames per segment, time
reversal reverses the picks, a spatial mirror takes the mirrored frames'
features, and every mirror permutes the target
(:func:`~model_export.data.augment.mirror_targets`). Evaluation reads the
serving frames' features. Seeded, AdamW with a one-cycle schedule, early
stopping on validation accuracy, as :mod:`model_export.train`.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from model_export.data.augment import AugmentConfig, mirror_targets
from model_export.data.features import Features, Flip, FrameFeatures
from model_export.nets.head import TemporalHead
from model_export.train import (
    Evaluation,
    History,
    Stepper,
    TrainConfig,
    batch_order,
    evaluation_of,
    run_epochs,
)
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
    """``(B,)`` rows of the data set and their targets -> ``(B, T, F)`` features, ``(B,)``
    targets after the mirrors."""
    frames = features.views[Flip()].shape[1]
    picks = np.stack(
        [
            jittered_indices(frames, augment.num_frames, rng, spread=augment.jitter_spread)
            for _ in rows
        ]
    )
    mirrored_targets, mirrored = mirror_targets(torch.from_numpy(targets), augment, rng)
    picks[mirrored["time"]] = picks[mirrored["time"], ::-1]
    flips = zip(mirrored["horizontal"], mirrored["vertical"], strict=True)
    batch = np.stack(
        [
            features.views[Flip(bool(h), bool(v))][row, pick]
            for row, pick, (h, v) in zip(rows, picks, flips, strict=True)
        ]
    )
    return torch.from_numpy(batch.astype(np.float32, copy=False)), mirrored_targets


def train_one_epoch(
    head: TemporalHead,
    features: FrameFeatures,
    rows: Rows,
    targets: Targets,
    *,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    augment: AugmentConfig,
    rng: np.random.Generator,
    config: TrainConfig,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over the training rows in a seeded order; returns loss, accuracy."""
    head.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    batches = batch_order(len(rows), config.batch_size, rng)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, disable=not config.progress)
    for idx in bar:
        feats, target = sample_batch(features, rows[idx], targets[idx], augment=augment, rng=rng)
        logits = head.logits(feats)
        loss = criterion(logits, target)
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        nn.utils.clip_grad_norm_(head.parameters(), config.grad_clip)
        optimiser.step()
        scheduler.step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == target).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    head: TemporalHead, feats: Features, targets: Targets, *, batch_size: int = 256
) -> Evaluation:
    """The head on ``(N, T, F)`` serving-frame features: NLL, accuracy, probabilities."""
    head.eval()
    probs = [
        head(torch.from_numpy(np.ascontiguousarray(feats[i : i + batch_size])))
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
) -> History:
    """Train ``head`` in place on the ``train`` rows' cached features, early-stopping on
    ``val`` (serving-frame features); leaves the best weights in ``head``."""

    def one_epoch(step: Stepper, rng: np.random.Generator, desc: str) -> tuple[float, float]:
        return train_one_epoch(
            head,
            features,
            *train,
            optimiser=step.optimiser,
            scheduler=step.scheduler,
            augment=augment,
            rng=rng,
            config=config,
            desc=desc,
        )

    return run_epochs(
        head, one_epoch, lambda: evaluate(head, *val), count=len(train[0]), config=config, name=name
    )
