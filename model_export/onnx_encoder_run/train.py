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

import copy
import logging
import time

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from model_export.data.augment import AugmentConfig, mirror_targets
from model_export.data.features import Features, Flip, FrameFeatures
from model_export.nets.head import TemporalHead
from model_export.train import Evaluation, History, TrainConfig, seed_everything
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
    order = rng.permutation(len(rows))
    batches = [
        np.sort(order[i : i + config.batch_size]) for i in range(0, len(order), config.batch_size)
    ]
    if len(batches) > 1 and len(batches[-1]) < 2:  # BatchNorm needs > 1 clip
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
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
    p = torch.cat(probs) if probs else torch.zeros((0, head.config.num_classes))
    t = torch.from_numpy(targets)
    loss = float(nn.functional.nll_loss(torch.log(p.clamp_min(1e-12)), t)) if len(t) else 0.0
    accuracy = float((p.argmax(1) == t).float().mean()) if len(t) else 0.0
    return Evaluation(loss=loss, accuracy=accuracy, probabilities=p.numpy())


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
    seed_everything(config.seed, threads=config.threads)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train[0]) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.lr,
        total_steps=config.epochs * (steps_per_epoch + 1),
        pct_start=config.warmup,
    )
    history = History()
    best: tuple[float, float] = (-1.0, 0.0)
    best_state = copy.deepcopy(head.state_dict())
    for epoch in range(config.epochs):
        start = time.perf_counter()
        loss, acc = train_one_epoch(
            head,
            features,
            *train,
            optimiser=optimiser,
            scheduler=scheduler,
            augment=augment,
            rng=rng,
            config=config,
            desc=f"{name} {epoch + 1}/{config.epochs}",
        )
        result = evaluate(head, *val)
        history.train_loss.append(loss)
        history.train_accuracy.append(acc)
        history.val_loss.append(result.loss)
        history.val_accuracy.append(result.accuracy)
        history.lr.append(float(scheduler.get_last_lr()[0]))
        history.seconds.append(time.perf_counter() - start)
        log.info(
            "%s epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f (%.1f s)",
            name,
            epoch + 1,
            loss,
            acc,
            result.loss,
            result.accuracy,
            history.seconds[-1],
        )
        if (result.accuracy, -result.loss) > best:
            best = (result.accuracy, -result.loss)
            best_state = copy.deepcopy(head.state_dict())
            history.best_epoch = epoch
        elif epoch - history.best_epoch >= config.patience:
            log.info("%s: no better val accuracy for %d epochs; stopping", name, config.patience)
            break
    head.load_state_dict(best_state)
    head.eval()
    return history
