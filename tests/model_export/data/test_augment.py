"""Augment: mirrors of space and time relabel the motion, and never mislabel it.

Clips of each motion are rendered, sent through the real augmentation, and a
tracker (centroid, orientation, area of the bright object) reads the motion
back from the pixels; it must agree with the label that comes out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import torch

from model_export.data.augment import (
    AugmentConfig,
    augment_batch,
    default_config,
    label_permutation,
    temporal_jitter,
)
from model_export.data.synth import LABELS
from tests.support.media import moving_square_frames

T, SIZE = 8, 64
Frames = npt.NDArray[np.uint8]


def _render(label: str, n: int = 3 * T) -> Frames:
    """``(n, SIZE, SIZE, 3) uint8``: a bright object doing ``label`` over grey."""
    if label in ("move_left", "move_right"):
        return moving_square_frames(n, SIZE, SIZE, direction=1 if label == "move_right" else -1)
    if label in ("move_up", "move_down"):
        frames = moving_square_frames(n, SIZE, SIZE, direction=1 if label == "move_down" else -1)
        return np.ascontiguousarray(frames.transpose(0, 2, 1, 3))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
    frames = np.full((n, SIZE, SIZE, 3), 64, dtype=np.uint8)
    for i in range(n):
        if label.startswith("zoom"):
            half = 6 + 18 * (i if label == "zoom_in" else n - 1 - i) / (n - 1)
            mask = (np.abs(xx) <= half) & (np.abs(yy) <= half)
        else:  # a bar turning 4 degrees a frame; y points down, so + is clockwise
            a = np.deg2rad(20 + 4 * i * (1 if label == "rotate_cw" else -1))
            along = xx * np.cos(a) + yy * np.sin(a)
            across = -xx * np.sin(a) + yy * np.cos(a)
            mask = (np.abs(across) <= 3) & (np.abs(along) <= 24)
        frames[i][mask] = 255
    return frames


def _motion(frames: Frames) -> dict[str, float]:
    """Net dx, dy (px), turn (radians, + clockwise) and area ratio of the bright object."""
    grey = frames.astype(np.float32).mean(axis=-1)
    xs, ys, angles, areas = [], [], [], []
    for g in grey:
        mask = g > (g.min() + g.max()) / 2
        y, x = np.nonzero(mask)
        xs.append(x.mean())
        ys.append(y.mean())
        areas.append(mask.sum())
        mu20, mu02 = ((x - x.mean()) ** 2).mean(), ((y - y.mean()) ** 2).mean()
        mu11 = ((x - x.mean()) * (y - y.mean())).mean()
        angles.append(0.5 * np.arctan2(2 * mu11, mu20 - mu02))
    turns = (np.diff(angles) + np.pi / 2) % np.pi - np.pi / 2
    return {
        "dx": xs[-1] - xs[0],
        "dy": ys[-1] - ys[0],
        "turn": float(turns.sum()),
        "growth": areas[-1] / areas[0],
    }


def _agrees(label: str, frames: Frames) -> bool:
    m = _motion(frames)
    return {
        "move_left": m["dx"] < -10,
        "move_right": m["dx"] > 10,
        "move_up": m["dy"] < -10,
        "move_down": m["dy"] > 10,
        "zoom_in": m["growth"] > 2,
        "zoom_out": m["growth"] < 0.5,
        "rotate_cw": m["turn"] > 0.3,
        "rotate_ccw": m["turn"] < -0.3,
    }[label]


@pytest.mark.parametrize("label", LABELS)
def test_the_tracker_reads_every_rendered_motion(label: str) -> None:
    frames = _render(label)
    assert _agrees(label, frames)
    assert not any(_agrees(other, frames) for other in LABELS if other != label)


def test_permutations_derived_from_label_names() -> None:
    def mapping(mirror: str) -> dict[str, str]:
        perm = label_permutation(LABELS, mirror)  # type: ignore[arg-type]
        assert perm is not None
        return {LABELS[i]: LABELS[j] for i, j in enumerate(perm) if i != j}

    assert mapping("horizontal") == {
        "move_left": "move_right",
        "move_right": "move_left",
        "rotate_cw": "rotate_ccw",
        "rotate_ccw": "rotate_cw",
    }
    assert mapping("vertical") == {
        "move_up": "move_down",
        "move_down": "move_up",
        "rotate_cw": "rotate_ccw",
        "rotate_ccw": "rotate_cw",
    }
    assert len(mapping("time")) == len(LABELS)


def test_mirrors_are_disabled_for_labels_they_cannot_understand() -> None:
    assert label_permutation(["Basketball", "JumpRope"], "horizontal") is None
    assert label_permutation(["move_left", "zoom_in"], "horizontal") is None  # no partner
    config = default_config(["cat", "dog"], num_frames=T)
    assert (config.hflip, config.vflip, config.reverse) == (None, None, None)
    custom = label_permutation(["a", "b", "c"], "horizontal", custom={"a": "b", "b": "a"})
    assert custom == (1, 0, 2)
    assert label_permutation(["a", "b"], "horizontal", custom={"a": "b"}) is None


@pytest.mark.parametrize(
    ("label", "dim", "expected"),
    [
        ("move_left", 3, "move_right"),
        ("rotate_cw", 3, "rotate_ccw"),
        ("zoom_in", 3, "zoom_in"),
        ("move_up", 3, "move_up"),
        ("move_up", 2, "move_down"),
        ("rotate_ccw", 2, "rotate_cw"),
        ("move_left", 2, "move_left"),
        ("zoom_out", 1, "zoom_in"),
        ("move_down", 1, "move_up"),
    ],
)
def test_a_mirrored_clip_moves_as_its_new_label_says(label: str, dim: int, expected: str) -> None:
    mirror = {1: "time", 2: "vertical", 3: "horizontal"}[dim]
    perm = label_permutation(LABELS, mirror)  # type: ignore[arg-type]
    assert perm is not None
    # Only this mirror, and no other transform: what comes out is the clip or its mirror.
    config = AugmentConfig(
        num_frames=T,
        jitter_spread=0.0,
        scale=(1.0, 1.0),
        max_shift=0.0,
        max_degrees=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        channel_shuffle=0.0,
        reverse=perm if mirror == "time" else None,
        vflip=perm if mirror == "vertical" else None,
        hflip=perm if mirror == "horizontal" else None,
    )
    clips = torch.from_numpy(_render(label))[None].expand(16, -1, -1, -1, -1)
    targets = torch.full((16,), LABELS.index(label))
    out, new = augment_batch(clips, targets, config=config, rng=np.random.default_rng(0))
    plain = temporal_jitter(clips[:1], T, np.random.default_rng(0), spread=0.0)[0]
    flipped = plain.flip(dim - 1)
    kinds = [(torch.equal(frames, plain), torch.equal(frames, flipped)) for frames in out]
    assert all(any(kind) for kind in kinds)  # each clip is itself or its mirror
    assert any(is_flip for _, is_flip in kinds) and any(is_plain for is_plain, _ in kinds)
    for frames, target, (is_plain, _) in zip(out, new.tolist(), kinds, strict=True):
        assert LABELS[target] == (label if is_plain else expected)
        assert _agrees(LABELS[target], frames.numpy())


def test_full_augmentation_never_mislabels() -> None:
    config = default_config(LABELS, num_frames=T)
    assert config.hflip and config.vflip and config.reverse
    clips = torch.from_numpy(np.stack([_render(label) for label in LABELS]))
    targets = torch.arange(len(LABELS))
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(6):
        out, new = augment_batch(clips, targets, config=config, rng=rng)
        assert out.shape == (len(LABELS), T, SIZE, SIZE, 3)
        assert out.dtype == torch.uint8
        changed += int((new != targets).sum())
        for frames, target in zip(out.numpy(), new.tolist(), strict=True):
            assert _agrees(LABELS[target], frames), LABELS[target]
    assert changed > 0


def test_temporal_jitter_picks_one_frame_of_each_three() -> None:
    clips = torch.arange(3 * T).view(1, 3 * T, 1, 1, 1).expand(2, -1, 2, 2, 3).contiguous()
    rng = np.random.default_rng(1)
    for _ in range(20):
        picked = temporal_jitter(clips, T, rng)[:, :, 0, 0, 0]
        assert torch.equal(picked // 3, torch.arange(T).expand(2, -1))
    centre = temporal_jitter(clips, T, rng, spread=0.0)[0, :, 0, 0, 0]
    assert torch.equal(centre, torch.arange(1, 3 * T, 3))
