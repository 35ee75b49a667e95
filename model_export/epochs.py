"""Epochs: the loop every trainer shares, what configures it and what it returns.

:func:`run_epochs` runs seeded AdamW with a one-cycle schedule epoch by epoch,
validates after each, stops early on validation accuracy, writes the training
state after every epoch and resumes from it (:mod:`model_export.resume`), on
``TrainConfig.device`` (mixed precision on CUDA: :mod:`model_export.stepper`),
and hands the module back on the CPU with its best weights.
:func:`train_batches` is one epoch's batches (built ahead on CUDA). The CNN
trainer (:mod:`model_export.train`) and the frozen-encoder head trainer
(:mod:`model_export.onnx_encoder_run.train`) supply only their batches and
their evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from model_export.device import CPU, pinned, prefetched, resolve_device, send
from model_export.resume import Resumable, fingerprint
from model_export.stepper import Stepper, one_cycle

log = logging.getLogger(__name__)

Targets = npt.NDArray[np.int64]
Indices = npt.NDArray[np.int64]
Batch = tuple[torch.Tensor, torch.Tensor]  # inputs, (B,) targets


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
    device: str = "cpu"  # auto | cpu | cuda (auto: CUDA when torch sees one)
    # Batches built ahead in a background thread (0: in the training loop). None: 2 on CUDA,
    # 0 on the CPU, where the two threads share the cores (an epoch took 6% longer on 2).
    prefetch: int | None = None
    state_path: Path | None = None  # the training state, written after every epoch
    resume: bool = False  # continue from state_path when it is there

    def __post_init__(self) -> None:
        if self.resume and self.state_path is None:
            raise ValueError("resume needs a state_path to resume from")

    def prefetch_on(self, device: torch.device) -> int:
        """How many batches to build ahead when training on ``device``."""
        if self.prefetch is not None:
            return self.prefetch
        return 2 if device.type == "cuda" else 0


# Settings that change how a run goes, not what it computes: a run may resume under others.
_HOW_NOT_WHAT = frozenset({"threads", "progress", "device", "prefetch", "state_path", "resume"})


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

    def add(self, loss: float, acc: float, val: Evaluation, *, lr: float, seconds: float) -> None:
        """Append one epoch: its training loss and accuracy, validation, lr and duration."""
        self.train_loss.append(loss)
        self.train_accuracy.append(acc)
        self.val_loss.append(val.loss)
        self.val_accuracy.append(val.accuracy)
        self.lr.append(lr)
        self.seconds.append(seconds)


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


def train_batches(
    forward: Callable[[torch.Tensor], torch.Tensor],
    build: Callable[[Indices], Batch],
    batches: Sequence[Indices],
    *,
    step: Stepper,
    config: TrainConfig,
    desc: str,
) -> tuple[float, float]:
    """Train on the batch ``build`` makes of each of ``batches`` (on CUDA built ahead, in
    order, in a background thread: :meth:`TrainConfig.prefetch_on`), ``forward`` taking its
    inputs to ``(B, C)`` logits; returns mean loss and accuracy."""
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def build_pinned(idx: Indices) -> Batch:
        inputs, target = build(idx)
        return pinned(inputs, step.device), pinned(target, step.device)

    total_loss, correct, seen = 0.0, 0, 0
    depth = config.prefetch_on(step.device)
    with closing(prefetched(build_pinned, batches, depth=depth)) as stream:
        bar = tqdm(stream, total=len(batches), desc=desc, unit="batch", leave=False,
                   disable=not config.progress)  # fmt: skip
        for batch in bar:
            inputs, target = (send(t, step.device) for t in batch)
            with step.autocast():
                logits = forward(inputs)
                loss = criterion(logits, target)
            step.update(loss)
            total_loss += float(loss.detach()) * len(target)
            correct += int((logits.argmax(1) == target).sum())
            seen += len(target)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


def evaluation_of(probs: list[torch.Tensor], targets: Targets, num_classes: int) -> Evaluation:
    """NLL and accuracy of batches of ``(n, C)`` probabilities against ``(N,)`` targets."""
    p = torch.cat(probs) if probs else torch.zeros((0, num_classes))
    t = torch.from_numpy(targets)
    loss = float(nn.functional.nll_loss(torch.log(p.clamp_min(1e-12)), t)) if len(t) else 0.0
    accuracy = float((p.argmax(1) == t).float().mean()) if len(t) else 0.0
    return Evaluation(loss=loss, accuracy=accuracy, probabilities=p.numpy())


@dataclass
class Progress:
    """Where a run stands after its last whole epoch (the part of the training state that
    is the loop's own)."""

    history: History = field(default_factory=History)
    best: tuple[float, float] = (-1.0, 0.0)  # (val accuracy, -val loss) of the best epoch
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)  # its weights, on the CPU
    epochs_done: int = 0
    finished: bool = False  # by early stopping or after the last epoch

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "history": self.history.as_dict()
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Progress:
        return cls(**saved | {"history": History(**saved["history"]), "best": tuple(saved["best"])})


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s weights and buffers on the CPU."""
    return {k: v.detach().to(CPU, copy=True) for k, v in module.state_dict().items()}


def run_epochs(
    module: nn.Module,
    one_epoch: Callable[[Stepper, np.random.Generator, str], tuple[float, float]],
    validate: Callable[[], Evaluation],
    *,
    count: int,
    config: TrainConfig,
    name: str,
    data_key: str = "",
) -> History:
    """The loop every trainer shares: seeded AdamW with a one-cycle schedule over ``count``
    training items, ``one_epoch`` then ``validate`` each epoch on ``config.device``, early
    stopping on validation accuracy (then loss); leaves the best weights in ``module``, on
    the CPU in eval mode, and returns the curves.

    With ``config.state_path`` the training state is written there after every epoch and
    kept when the run ends (marked finished: a resumed finished run gives back its result
    without training again). ``config.resume`` continues from it, to the result of a run
    never stopped (bit for bit on the CPU), or starts afresh when there is none; a state
    that another run wrote (other settings, ``count``, ``data_key`` or module) raises
    :class:`~model_export.resume.ResumeError`.
    """
    seed_everything(config.seed, threads=config.threads)
    device = resolve_device(config.device)
    step = one_cycle(
        module.to(device),
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup=config.warmup,
        total_steps=config.epochs * (max(1, count // config.batch_size) + 1),
        grad_clip=config.grad_clip,
        device=device,
    )
    what = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in _HOW_NOT_WHAT}
    key = fingerprint(module, what, count=count, data_key=data_key)
    state = Resumable(key, module, step, np.random.default_rng(config.seed))
    run = Progress(best_state=cpu_state(module))
    path = config.state_path
    if config.resume and path is not None and path.is_file():
        run = Progress.from_dict(state.restore(path))
        log.info("%s: resuming from %s after epoch %d of %d%s", name, path, run.epochs_done,
                 config.epochs, " (finished)" if run.finished else "")  # fmt: skip
    elif config.resume:
        log.info("%s: no training state at %s; starting from the first epoch", name, path)
    while not run.finished and run.epochs_done < config.epochs:
        epoch, start = run.epochs_done, time.perf_counter()
        loss, acc = one_epoch(step, state.rng, f"{name} {epoch + 1}/{config.epochs}")
        result = validate()
        lr = float(step.scheduler.get_last_lr()[0])
        run.history.add(loss, acc, result, lr=lr, seconds=time.perf_counter() - start)
        log.info(
            "%s epoch %d: train loss %.3f acc %.3f | val loss %.3f acc %.3f (%.0f s)",
            name,
            epoch + 1,
            loss,
            acc,
            result.loss,
            result.accuracy,
            run.history.seconds[-1],
        )
        if (result.accuracy, -result.loss) > run.best:
            run.best = (result.accuracy, -result.loss)
            run.best_state = cpu_state(module)
            run.history.best_epoch = epoch
        elif epoch - run.history.best_epoch >= config.patience:
            log.info("%s: no better val accuracy for %d epochs; stopping", name, config.patience)
            run.finished = True
        run.epochs_done = epoch + 1
        run.finished = run.finished or run.epochs_done == config.epochs
        if path is not None:
            state.save(path, run.as_dict())
    module.to(CPU).load_state_dict(run.best_state)
    module.eval()
    return run.history
