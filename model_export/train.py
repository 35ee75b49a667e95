"""Train: ``train_one_epoch``, ``evaluate``, ``fit`` — seeded, early-stopped, recorded.

Training batches are cached ``(N, 3T, H, W, 3) uint8`` clips, augmented on
the fly (temporal jitter picks the frames); evaluation runs the model as
served: ``(N, T, H, W, 3) uint8`` serving frames in, probabilities out.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from model_export.data.augment import AugmentConfig, augment_batch
from model_export.nets.classifier import VideoClassifier

log = logging.getLogger(__name__)

Clips = npt.NDArray[np.uint8]
Targets = npt.NDArray[np.int64]
Indices = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Optimisation settings (AdamW with a one-cycle schedule: warm-up, then cosine decay)."""

    epochs: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.005
    warmup: float = 0.15  # fraction of all steps spent warming up
    label_smoothing: float = 0.0  # the model underfits: no smoothing, light decay
    # Epochs without a better val accuracy before stopping. Long: on 176 val clips the
    # curve plateaus for 10+ epochs before the one-cycle decay lifts it again.
    patience: int = 15
    grad_clip: float = 2.0
    seed: int = 0
    threads: int = 2
    progress: bool = True


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Loss and accuracy of a model on a split, with its probabilities ``(N, C)``."""

    loss: float
    accuracy: float
    probabilities: npt.NDArray[np.float32]

    @property
    def predictions(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.probabilities.argmax(axis=1), dtype=np.int64)


@dataclass
class History:
    """Per-epoch training curves."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = -1

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def seed_everything(seed: int, *, threads: int = 2) -> None:
    """Same seed, same model: seeds torch, pins threads, asks for deterministic kernels."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def batch_order(count: int, batch_size: int, rng: np.random.Generator) -> list[Indices]:
    """A seeded order of ``0..count-1`` in batches, each sorted (reads stay in file order);
    a last batch of one joins the one before it (BatchNorm needs > 1 clip)."""
    order = rng.permutation(count)
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return [np.sort(batch) for batch in batches]


def train_one_epoch(
    model: VideoClassifier,
    clips: Clips,
    targets: Targets,
    *,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    augment: AugmentConfig,
    rng: np.random.Generator,
    config: TrainConfig,
    desc: str = "train",
) -> tuple[float, float]:
    """One pass over ``(N, 3T, H, W, 3) uint8`` clips in a seeded order; returns loss, accuracy."""
    model.train()
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    batches = batch_order(len(clips), config.batch_size, rng)
    total_loss, correct, seen = 0.0, 0, 0
    bar = tqdm(batches, desc=desc, unit="batch", leave=False, disable=not config.progress)
    for idx in bar:
        batch = torch.from_numpy(clips[idx])
        target = torch.from_numpy(targets[idx])
        planes, target = augment_batch(batch, target, config=augment, rng=rng, planes=True)
        logits = model.plane_logits(planes)
        loss = criterion(logits, target)
        optimiser.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimiser.step()
        scheduler.step()
        total_loss += float(loss.detach()) * len(idx)
        correct += int((logits.argmax(1) == target).sum())
        seen += len(idx)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


@torch.no_grad()
def evaluate(
    model: VideoClassifier, clips: Clips, targets: Targets, *, batch_size: int = 64
) -> Evaluation:
    """The model as served on ``(N, T, H, W, 3) uint8`` clips: NLL, accuracy, probabilities."""
    model.eval()
    probs = [
        model(torch.from_numpy(np.ascontiguousarray(clips[i : i + batch_size])))
        for i in range(0, len(clips), batch_size)
    ]
    return evaluation_of(probs, targets, model.config.num_classes)


def evaluation_of(probs: list[torch.Tensor], targets: Targets, num_classes: int) -> Evaluation:
    """NLL and accuracy of batches of ``(n, C)`` probabilities against ``(N,)`` targets."""
    p = torch.cat(probs) if probs else torch.zeros((0, num_classes))
    t = torch.from_numpy(targets)
    loss = float(nn.functional.nll_loss(torch.log(p.clamp_min(1e-12)), t)) if len(t) else 0.0
    accuracy = float((p.argmax(1) == t).float().mean()) if len(t) else 0.0
    return Evaluation(loss=loss, accuracy=accuracy, probabilities=p.numpy())


def fit(
    model: VideoClassifier,
    train: tuple[Clips, Targets],
    val: tuple[Clips, Targets],
    *,
    augment: AugmentConfig,
    config: TrainConfig,
    name: str = "model",
) -> History:
    """Train ``model`` in place on ``train`` (3T-frame clips), early-stopping on ``val``
    (T-frame serving clips); leaves the best weights in ``model`` and returns the curves."""

    def one_epoch(step: Stepper, rng: np.random.Generator, desc: str) -> tuple[float, float]:
        return train_one_epoch(
            model,
            *train,
            optimiser=step.optimiser,
            scheduler=step.scheduler,
            augment=augment,
            rng=rng,
            config=config,
            desc=desc,
        )

    return run_epochs(
        model,
        one_epoch,
        lambda: evaluate(model, *val),
        count=len(train[0]),
        config=config,
        name=name,
    )


@dataclass(frozen=True, slots=True)
class Stepper:
    """The optimiser and its learning-rate schedule, stepped once per batch."""

    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def run_epochs(
    module: nn.Module,
    one_epoch: Callable[[Stepper, np.random.Generator, str], tuple[float, float]],
    validate: Callable[[], Evaluation],
    *,
    count: int,
    config: TrainConfig,
    name: str,
) -> History:
    """The loop every trainer shares: seeded AdamW with a one-cycle schedule over ``count``
    training items, ``one_epoch`` then ``validate`` each epoch, early stopping on validation
    accuracy (then loss); leaves the best weights in ``module`` and returns the curves."""
    seed_everything(config.seed, threads=config.threads)
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.AdamW(
        module.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, count // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=config.lr,
        total_steps=config.epochs * (steps_per_epoch + 1),
        pct_start=config.warmup,
    )
    step = Stepper(optimiser, scheduler)
    history = History()
    best: tuple[float, float] = (-1.0, 0.0)
    best_state = copy.deepcopy(module.state_dict())
    for epoch in range(config.epochs):
        start = time.perf_counter()
        loss, acc = one_epoch(step, rng, f"{name} {epoch + 1}/{config.epochs}")
        result = validate()
        history.train_loss.append(loss)
        history.train_accuracy.append(acc)
        history.val_loss.append(result.loss)
        history.val_accuracy.append(result.accuracy)
        history.lr.append(float(scheduler.get_last_lr()[0]))
        history.seconds.append(time.perf_counter() - start)
        log.info(
            "%s epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f (%.0f s)",
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
            best_state = copy.deepcopy(module.state_dict())
            history.best_epoch = epoch
        elif epoch - history.best_epoch >= config.patience:
            log.info("%s: no better val accuracy for %d epochs; stopping", name, config.patience)
            break
    module.load_state_dict(best_state)
    module.eval()
    return history
