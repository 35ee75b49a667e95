"""Training: same seed, same model; early stopping keeps the best weights; the baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch

from model_export.data.augment import augment_batch, default_config
from model_export.epochs import TrainConfig, seed_everything
from model_export.evaluation.svm import extract_features, fit_svm, predict
from model_export.nets.classifier import ModelConfig, build_model, count_parameters
from model_export.train import evaluate, fit

T, S = 4, 16
LABELS = ("move_left", "move_right")


def _clips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bright bar sliding left or right: ``(n, 3T, S, S, 3) uint8`` and targets."""
    rng = np.random.default_rng(seed)
    clips = np.full((n, 3 * T, S, S, 3), 40, dtype=np.uint8)
    targets = rng.integers(0, 2, n).astype(np.int64)
    for i, target in enumerate(targets):
        for k in range(3 * T):
            x = 2 + k if target == 1 else S - 3 - k
            clips[i, k, :, max(x - 1, 0) : x + 1] = 230
    return clips, targets


def _tiny(arch: str = "lstm") -> ModelConfig:
    return ModelConfig(
        num_classes=2,
        arch=arch,  # type: ignore[arg-type]
        height=S,
        width=S,
        channels=(8, 8, 8),
        feature_dim=8,
        keypoints=4,
        hidden_size=8,
        change_channels=2,
    )


def _fit(seed: int, epochs: int = 2, **settings: Any) -> tuple[torch.nn.Module, list[float]]:
    seed_everything(seed)
    model = build_model(_tiny())
    train = _clips(24, 0)
    val_clips, val_targets = _clips(8, 1)
    history = fit(
        model,
        train,
        (np.ascontiguousarray(val_clips[:, 1::3]), val_targets),
        augment=default_config(LABELS, num_frames=T),
        config=TrainConfig(epochs=epochs, batch_size=8, seed=seed, progress=False, **settings),
    )
    return model, history.train_loss


def test_same_seed_same_model() -> None:
    first, loss_a = _fit(3)
    second, loss_b = _fit(3)
    assert loss_a == loss_b
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    third, _ = _fit(4)
    assert not torch.equal(next(iter(first.parameters())), next(iter(third.parameters())))


def test_building_batches_ahead_changes_nothing() -> None:
    """The prefetch thread draws from the shared generator in the loop's own order, so
    the same seed gives the same model with batches built ahead or in the loop."""
    ahead, loss_a = _fit(3, prefetch=2)
    inline, loss_b = _fit(3, prefetch=0)
    assert loss_a == loss_b
    for (name, a), b in zip(ahead.state_dict().items(), inline.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not ahead.training
    assert all(t.device.type == "cpu" for t in ahead.state_dict().values())


def test_early_stopping_keeps_the_best_weights() -> None:
    seed_everything(0)
    model = build_model(_tiny())
    val_clips, val_targets = _clips(8, 1)
    val = (np.ascontiguousarray(val_clips[:, 1::3]), val_targets)
    config = TrainConfig(epochs=6, batch_size=8, patience=2, progress=False)
    history = fit(model, _clips(24, 0), val, augment=default_config(LABELS, num_frames=T),
                  config=config)  # fmt: skip
    assert len(history.val_accuracy) <= 6
    assert len(history.lr) == len(history.train_loss) == len(history.val_loss)
    best = max(history.val_accuracy)
    assert history.val_accuracy[history.best_epoch] == best
    assert evaluate(model, *val).accuracy == pytest.approx(best)


@pytest.mark.parametrize("motion", [False, True])
def test_every_architecture_gets_the_same_step_inputs(motion: bool) -> None:
    """The mean-pool model and the SVM see exactly what each LSTM step sees."""
    lstm = build_model(replace(_tiny("lstm"), motion=motion)).eval()
    mean_pool = build_model(replace(_tiny("mean_pool"), motion=motion)).eval()
    assert mean_pool.lstm is None
    assert lstm.step_norm.num_features == mean_pool.step_norm.num_features
    own = mean_pool.state_dict()
    shared = {k: v for k, v in lstm.state_dict().items() if k in own and not k.startswith("head.")}
    assert mean_pool.load_state_dict(shared, strict=False).missing_keys == [
        "head.weight",
        "head.bias",
    ]
    clips = torch.from_numpy(np.ascontiguousarray(_clips(6, 2)[0][:, 1::3]))
    with torch.no_grad():
        torch.testing.assert_close(mean_pool.step_inputs(clips), lstm.step_inputs(clips))
        pooled = lstm.step_inputs(clips).mean(dim=1).numpy()
    np.testing.assert_allclose(extract_features(lstm, clips.numpy()), pooled, rtol=1e-5, atol=1e-6)


def test_without_motion_the_baselines_see_no_order() -> None:
    lstm = build_model(replace(_tiny("lstm"), motion=False)).eval()
    mean_pool = build_model(replace(_tiny("mean_pool"), motion=False)).eval()
    assert count_parameters(mean_pool) < count_parameters(lstm)
    clips, targets = _clips(12, 2)
    serving = np.ascontiguousarray(clips[:, 1::3])
    reordered = np.ascontiguousarray(serving[:, ::-1])

    features = extract_features(lstm, serving)
    with torch.no_grad():
        probs = mean_pool(torch.from_numpy(serving))
        probs_reordered = mean_pool(torch.from_numpy(reordered))
        lstm_probs = lstm(torch.from_numpy(serving))
        lstm_reordered = lstm(torch.from_numpy(reordered))
    assert features.shape == (12, lstm.encoder.feature_dim)
    np.testing.assert_allclose(extract_features(lstm, reordered), features, rtol=1e-4, atol=1e-5)
    svm = fit_svm(features, targets)
    assert predict(svm, features).shape == (12,)
    torch.testing.assert_close(probs.sum(1), torch.ones(12))
    torch.testing.assert_close(probs_reordered, probs, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(lstm_reordered, lstm_probs, rtol=1e-4, atol=1e-5)  # it can tell


@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_head_reads_each_direction_after_the_whole_clip(bidirectional: bool) -> None:
    """Forwards ends at the last frame, backwards at the first: the head gets both final states."""
    seed_everything(0)
    model = build_model(replace(_tiny(), bidirectional=bidirectional)).eval()
    assert model.lstm is not None
    seen: dict[str, torch.Tensor] = {}
    model.lstm.register_forward_hook(lambda m, i, out: seen.update(h_n=out[1][0]))
    model.head.register_forward_pre_hook(lambda m, args: seen.update(head=args[0]))
    with torch.no_grad():
        model(torch.from_numpy(np.ascontiguousarray(_clips(3, 0)[0][:, ::3])))
    h_n = seen["h_n"]  # (layers * directions, N, hidden)
    final = torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]
    assert seen["head"].shape == (3, 8 * (2 if bidirectional else 1))
    torch.testing.assert_close(seen["head"], final)


@pytest.mark.parametrize("fovea", [False, True])
def test_training_sees_what_serving_sends(fovea: bool) -> None:
    """Training's float planes are the augmented uint8 frames, and score the same."""
    side = 64 if fovea else S
    config = replace(_tiny(), height=side, width=side)
    if fovea:
        config = replace(config, pool=2, fovea=16)
    model = build_model(config).eval()
    rng = np.random.default_rng(0)
    clips = torch.from_numpy(rng.integers(0, 256, (3, 3 * T, side, side, 3), dtype=np.uint8))
    targets = torch.tensor([0, 1, 0])
    augment = default_config(LABELS, num_frames=T)
    frames, t1 = augment_batch(clips, targets, config=augment, rng=np.random.default_rng(3))
    planes, t2 = augment_batch(
        clips, targets, config=augment, rng=np.random.default_rng(3), planes=True
    )
    assert frames.dtype == torch.uint8
    assert frames.shape == (3, T, side, side, 3)
    assert torch.equal(t1, t2)
    assert torch.equal(planes, frames.permute(0, 1, 4, 2, 3).float())
    with torch.no_grad():
        torch.testing.assert_close(model.plane_logits(planes), model.logits(frames))
