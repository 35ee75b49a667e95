"""Resume: a run stopped after epoch k and resumed ends where an uninterrupted one does,
bit for bit; a state file from another run is refused; writes are atomic."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from model_export import train as cnn_train
from model_export.checkpoint import save_atomically
from model_export.data.augment import default_config
from model_export.data.features import FrameFeatures, allowed_flips
from model_export.epochs import Evaluation, History, TrainConfig, seed_everything
from model_export.nets.classifier import build_model
from model_export.nets.head import HeadConfig, TemporalHead
from model_export.onnx_encoder_run import train as head_train
from model_export.resume import Resumable, ResumeError
from model_export.stepper import Stepper, one_cycle
from model_export.train import fit
from tests.model_export.test_train import LABELS, T, _clips, _tiny

Trained = tuple[nn.Module, History]

AUGMENT = default_config(LABELS, num_frames=T)


def _cnn(config: TrainConfig) -> Trained:
    seed_everything(config.seed)
    model = build_model(_tiny())
    val_clips, val_targets = _clips(8, 1)
    val = (np.ascontiguousarray(val_clips[:, 1::3]), val_targets)
    return model, fit(model, _clips(16, 0), val, augment=AUGMENT, config=config)


def _features(rows: int = 40, feature_dim: int = 16) -> tuple[FrameFeatures, np.ndarray]:
    """Random ``(rows, 3T, F)`` features for every mirror the labels allow, and targets."""
    rng = np.random.default_rng(0)
    shape = (rows, 3 * T, feature_dim)
    views = {f: rng.standard_normal(shape).astype(np.float32) for f in allowed_flips(AUGMENT)}
    return FrameFeatures("features", views), rng.integers(0, 2, rows).astype(np.int64)


def _head(config: TrainConfig, *, arch: str = "lstm", flip_targets: bool = False) -> Trained:
    features, targets = _features()
    if flip_targets:
        targets = 1 - targets
    seed_everything(config.seed)
    head = TemporalHead(HeadConfig(16, 2, arch=arch, hidden_size=8))  # type: ignore[arg-type]
    val = (features.serving(np.arange(32, 40)), targets[32:])
    train = (np.arange(32), targets[:32])
    return head, head_train.fit(head, features, train, val, augment=AUGMENT, config=config)


@dataclass(frozen=True)
class Trainer:
    train: Callable[[TrainConfig], Trained]
    module: Any  # where its `evaluate` lives


TRAINERS = {
    "cnn": Trainer(_cnn, cnn_train),
    "head": Trainer(_head, head_train),
}


def _stop_in_epoch(monkeypatch: pytest.MonkeyPatch, trainer: Trainer, epoch: int) -> None:
    """Ctrl-C while validating ``epoch`` (1-based): the epochs before it are complete."""
    evaluate = trainer.module.evaluate
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Evaluation:
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        result: Evaluation = evaluate(*args, **kwargs)
        return result

    monkeypatch.setattr(trainer.module, "evaluate", interrupted)


def _curves(history: History) -> dict[str, object]:
    return {k: v for k, v in history.as_dict().items() if k != "seconds"}  # wall time differs


def _assert_same(a: Trained, b: Trained) -> None:
    assert _curves(a[1]) == _curves(b[1])
    for (name, x), y in zip(a[0].state_dict().items(), b[0].state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def _progress(path: Path) -> dict[str, Any]:
    saved: dict[str, Any] = torch.load(path, weights_only=True)
    progress: dict[str, Any] = saved["progress"]
    return progress


@pytest.mark.parametrize("kind", ["cnn", "head"])
def test_a_run_stopped_after_epoch_2_resumes_to_the_uninterrupted_result(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = TRAINERS[kind]
    config = TrainConfig(epochs=4, batch_size=8, progress=False, state_path=tmp_path / "a.pt")
    whole = trainer.train(config)
    assert _progress(tmp_path / "a.pt")["finished"]

    stopped = replace(config, state_path=tmp_path / "b.pt")
    _stop_in_epoch(monkeypatch, trainer, 3)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(stopped)
    monkeypatch.undo()
    progress = _progress(tmp_path / "b.pt")
    assert (progress["epochs_done"], progress["finished"]) == (2, False)

    resumed = trainer.train(replace(stopped, resume=True, prefetch=2))  # batches built ahead
    _assert_same(resumed, whole)
    assert len(resumed[1].train_loss) == 4
    assert not resumed[0].training
    assert all(t.device.type == "cpu" for t in resumed[0].state_dict().values())


def test_a_finished_run_resumes_to_its_result_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Early stopping ends the run; the state stays, marked finished, with the best weights."""
    config = TrainConfig(epochs=10, batch_size=8, patience=0, progress=False,
                         state_path=tmp_path / "state.pt")  # fmt: skip
    first = _head(config)
    assert len(first[1].train_loss) < 10  # it stopped early
    assert _progress(tmp_path / "state.pt")["finished"]

    def no_training(*args: Any, **kwargs: Any) -> tuple[float, float]:
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(head_train, "train_one_epoch", no_training)
    _assert_same(_head(replace(config, resume=True)), first)


def test_resume_without_a_state_file_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = TrainConfig(epochs=2, batch_size=8, progress=False)
    fresh = _head(config)
    with caplog.at_level(logging.INFO, logger="model_export.epochs"):
        resumed = _head(replace(config, state_path=tmp_path / "none.pt", resume=True))
    assert "no training state" in caplog.text
    _assert_same(resumed, fresh)
    assert (tmp_path / "none.pt").is_file()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lr": 1e-3}, "lr 0.003 -> 0.001"),
        ({"arch": "mean_pool"}, "module"),
        ({"flip_targets": True}, "data"),
        ({"epochs": 2}, "epochs 1 -> 2"),
    ],
)
def test_a_state_file_from_another_run_is_refused(
    change: dict[str, Any], named: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.pt"
    config = TrainConfig(epochs=1, batch_size=8, progress=False, state_path=path)
    _head(config)
    settings = {k: v for k, v in change.items() if k in ("lr", "epochs")}
    options = {k: v for k, v in change.items() if k not in settings}
    with pytest.raises(ResumeError, match="different run") as raised:
        _head(replace(config, resume=True, **settings), **options)
    assert named in str(raised.value)
    # How a run goes (threads, progress bars, prefetch) is not what it computes.
    _head(replace(config, resume=True, threads=1, prefetch=2, progress=False))


def test_a_file_that_is_no_training_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    path.write_bytes(b"not a state")
    with pytest.raises(ResumeError, match="not a readable training state"):
        _head(TrainConfig(epochs=1, progress=False, state_path=path, resume=True))
    torch.save({"version": 0}, path)
    with pytest.raises(ResumeError, match="version 0"):
        _head(TrainConfig(epochs=1, progress=False, state_path=path, resume=True))


def test_resume_needs_a_state_path() -> None:
    with pytest.raises(ValueError, match="state_path"):
        TrainConfig(resume=True)


def test_writes_are_atomic(tmp_path: Path) -> None:
    """Each epoch replaces the file whole: no temporary file is left, and a write that
    fails keeps the previous state."""
    path = tmp_path / "state.pt"
    _head(TrainConfig(epochs=2, batch_size=8, progress=False, state_path=path))
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    before = path.read_bytes()
    with pytest.raises(AttributeError):
        save_atomically(path, {"unpicklable": lambda: None})
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]
    assert path.read_bytes() == before


def test_the_loss_scaler_and_generators_round_trip(tmp_path: Path) -> None:
    """Mixed precision's loss scaler (CUDA's; the CPU's stands in here) is saved and
    restored with the rest; so are numpy's and torch's generators."""
    module = nn.Linear(4, 2)
    base = one_cycle(module, lr=0.01, weight_decay=0.0, warmup=0.1, total_steps=8, grad_clip=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=1)
    step = Stepper(base.optimiser, base.scheduler, base.device, scaler, 1.0)
    rng = np.random.default_rng(5)
    state = Resumable({"run": 1}, module, step, rng)
    for _ in range(3):
        with step.autocast():
            loss = module(torch.randn(8, 4)).float().pow(2).mean()
        step.update(loss)
    state.save(tmp_path / "state.pt", {"epochs_done": 1})
    expected = (scaler.state_dict(), rng.random(), torch.rand(3), module.weight.clone())

    with torch.no_grad():
        module.weight.zero_()
    scaler.update(1.0)
    rng.random(7)
    assert state.restore(tmp_path / "state.pt") == {"epochs_done": 1}
    assert scaler.state_dict() == expected[0]
    assert rng.random() == expected[1]
    assert torch.equal(torch.rand(3), expected[2])
    assert torch.equal(module.weight, expected[3])
