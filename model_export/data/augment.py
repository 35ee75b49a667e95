"""Augment: pure, seeded transforms of training clip batches.

Clips travel as ``(N, T, H, W, 3) uint8`` (what the model takes); geometric
and colour transforms work in float and quantise back, so training sees
exactly the kind of input the service sends.

The classes are motions, so transforms that mirror space or time change the
label: a horizontal flip turns ``move_left`` into ``move_right`` and
``rotate_cw`` into ``rotate_ccw``. Such transforms run only with a label
permutation, derived here from the label NAMES (or given by the user);
without one they are disabled, never applied with an unchanged label.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812

from service.media.timestamps import jittered_indices

log = logging.getLogger(__name__)

Mirror = Literal["horizontal", "vertical", "time"]
Permutation = tuple[int, ...]

# Words that a mirror swaps; every other word of a known label is unchanged by it.
_SWAPS: dict[Mirror, dict[str, str]] = {
    "horizontal": {"left": "right", "cw": "ccw", "clockwise": "counterclockwise"},
    "vertical": {"up": "down", "top": "bottom", "cw": "ccw", "clockwise": "counterclockwise"},
    "time": {
        "left": "right",
        "up": "down",
        "in": "out",
        "cw": "ccw",
        "clockwise": "counterclockwise",
        "forward": "backward",
        "grow": "shrink",
        "open": "close",
    },
}
# Words known to mean the same thing after any mirror: the motion's kind, not its sense.
_NEUTRAL = frozenset(
    {"move", "moving", "zoom", "zooming", "rotate", "rotating", "spin", "turn", "pan", "tilt",
     "shift", "slide", "scale", "object", "camera"}
)  # fmt: skip


def _swap_table(mirror: Mirror) -> dict[str, str]:
    table = dict(_SWAPS[mirror])
    table.update({v: k for k, v in table.items()})
    return table


def _vocabulary() -> frozenset[str]:
    words = set(_NEUTRAL)
    for mirror in _SWAPS.values():
        words |= set(mirror) | set(mirror.values())
    return frozenset(words)


def label_permutation(
    labels: Sequence[str], mirror: Mirror, *, custom: Mapping[str, str] | None = None
) -> Permutation | None:
    """Class id -> class id after ``mirror``, or ``None`` when it cannot be known.

    Derived from names split into words (``move_left`` -> ``move``, ``left``):
    every word must be known, and every swapped name must be a label. A user's
    own labels give ``None`` (mirror disabled) unless ``custom`` maps each
    label that changes (the rest are taken as unchanged).
    """
    index = {name: i for i, name in enumerate(labels)}
    if custom is not None:
        mapping = {name: custom.get(name, name) for name in labels}
    else:
        known = _vocabulary()
        table = _swap_table(mirror)
        mapping = {}
        for name in labels:
            words = re.split(r"[\s_\-]+", name.lower())
            if not all(w in known for w in words):
                log.info("%s mirror disabled: label %r has unknown words", mirror, name)
                return None
            swapped = "_".join(table.get(w, w) for w in words)
            mapping[name] = next((n for n in labels if n.lower() == swapped), "")
    perm = tuple(index.get(mapping[name], -1) for name in labels)
    if -1 in perm or sorted(perm) != list(range(len(labels))):
        log.info("%s mirror disabled: no consistent label permutation for %s", mirror, labels)
        return None
    return perm


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Strengths of each transform; a permutation of ``None`` disables that mirror."""

    num_frames: int
    jitter_spread: float = 0.5
    scale: tuple[float, float] = (0.9, 1.0)
    max_shift: float = 0.04  # fraction of the frame size
    max_degrees: float = 4.0  # small: rotation direction is a class, a static tilt is not
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.4
    channel_shuffle: float = 0.5  # probability of permuting R, G, B
    noise_std: float = 0.0  # the decoder's own noise is usually enough
    hflip: Permutation | None = None
    vflip: Permutation | None = None
    reverse: Permutation | None = None


def default_config(labels: Sequence[str], *, num_frames: int) -> AugmentConfig:
    """Every transform on, mirrors wherever the label names allow them."""
    return AugmentConfig(
        num_frames=num_frames,
        hflip=label_permutation(labels, "horizontal"),
        vflip=label_permutation(labels, "vertical"),
        reverse=label_permutation(labels, "time"),
    )


def augment_batch(
    clips: torch.Tensor,
    targets: torch.Tensor,
    *,
    config: AugmentConfig,
    rng: np.random.Generator,
    planes: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, S, H, W, 3) uint8`` decoded clips -> ``(N, T, H, W, 3) uint8`` and new targets.

    With ``planes``, the same values as ``(N, T, 3, H, W)`` float (whole numbers
    0-255), the form :meth:`~model_export.nets.classifier.VideoClassifier.plane_logits` takes:
    training skips the round trip through uint8.

    ``S`` is ``3 T`` for cached clips (temporal jitter picks one frame of each three).
    Mirrors cost nothing of their own: reversing time reverses the picked indices,
    and the spatial flips join the affine warp that every clip goes through.
    """
    picks = jitter_picks(clips, config.num_frames, rng, spread=config.jitter_spread)
    targets, mirrored = mirror_targets(targets, config, rng)
    picks[mirrored["time"]] = picks[mirrored["time"], ::-1]
    frames = take_frames(clips, picks)
    # (N, T, 3, H, W) float, 0-255: every transform below is linear in intensity.
    x = frames.permute(0, 1, 4, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    x = random_affine(
        x,
        rng,
        scale=config.scale,
        max_shift=config.max_shift,
        max_degrees=config.max_degrees,
        hflip=mirrored["horizontal"],
        vflip=mirrored["vertical"],
    )
    x = colour_jitter(
        x,
        rng,
        brightness=config.brightness,
        contrast=config.contrast,
        saturation=config.saturation,
        channel_shuffle=config.channel_shuffle,
    )
    if config.noise_std > 0:
        noise = torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32))
        x = x + (255.0 * config.noise_std) * noise
    x = x.clamp_(0.0, 255.0).round_()  # the values uint8 holds
    if planes:
        return x, targets
    # Channels last as a view: the (N, T, 3, H, W) layout stays in memory, which is what
    # the model's first permute turns back into, without a copy.
    return x.permute(0, 1, 3, 4, 2).to(torch.uint8), targets


def mirror_targets(
    targets: torch.Tensor, config: AugmentConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, dict[Mirror, npt.NDArray[np.bool_]]]:
    """Which clips each mirror flips (half of them, where it has a permutation), and
    their new targets: ``(N,)`` targets -> new ``(N,)`` targets, ``{mirror: (N,) bool}``."""
    n = len(targets)
    mirrored: dict[Mirror, npt.NDArray[np.bool_]] = {}
    mirrors: tuple[tuple[Mirror, Permutation | None], ...] = (
        ("time", config.reverse),
        ("horizontal", config.hflip),
        ("vertical", config.vflip),
    )
    for mirror, perm in mirrors:
        mirrored[mirror] = np.zeros(n, dtype=bool)
        if perm is not None:
            mirrored[mirror] = chosen = rng.random(n) < 0.5
            mapped = torch.tensor(perm, dtype=targets.dtype)[targets]
            targets = torch.where(torch.from_numpy(chosen), mapped, targets)
    return targets, mirrored


def temporal_jitter(
    clips: torch.Tensor, num_frames: int, rng: np.random.Generator, *, spread: float = 0.5
) -> torch.Tensor:
    """``(N, S, ...) -> (N, T, ...)``: one frame per segment, near its centre, per clip."""
    return take_frames(clips, jitter_picks(clips, num_frames, rng, spread=spread))


def jitter_picks(
    clips: torch.Tensor, num_frames: int, rng: np.random.Generator, *, spread: float
) -> npt.NDArray[np.int64]:
    """``(N, T)`` frame indices into ``(N, S, ...)`` clips: one per segment, per clip."""
    return np.stack(
        [jittered_indices(clips.shape[1], num_frames, rng, spread=spread) for _ in clips]
    )


def take_frames(clips: torch.Tensor, picks: npt.NDArray[np.int64]) -> torch.Tensor:
    """``(N, S, ...)`` clips and ``(N, T)`` indices -> ``(N, T, ...)`` frames."""
    rows = torch.arange(len(clips)).view(-1, 1)
    return clips[rows, torch.from_numpy(picks)]


def random_affine(
    x: torch.Tensor,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float],
    max_shift: float,
    max_degrees: float,
    hflip: npt.NDArray[np.bool_] | None = None,
    vflip: npt.NDArray[np.bool_] | None = None,
) -> torch.Tensor:
    """Mild zoom-in crop, shift and tilt, the same for every frame of a clip.

    ``x``: ``(N, T, 3, H, W) float``; returns the same shape. Constant over
    time, so it never adds motion of its own. ``hflip`` / ``vflip`` ``(N,) bool``
    mirror those clips as well (before the warp, as if flipped first).
    """
    n, t, c, h, w = x.shape
    s = rng.uniform(*scale, size=n)
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=n))
    shift = rng.uniform(-1.0, 1.0, size=(n, 2)) * 2 * max_shift  # [-1, 1] spans 2
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = s * np.cos(angle), -s * np.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = s * np.sin(angle), s * np.cos(angle)
    theta[:, :, 2] = shift
    # Output pixel p samples the input at theta p; a flip first maps that to -x (or -y).
    for row, flipped in ((0, hflip), (1, vflip)):
        if flipped is not None:
            theta[flipped, row] *= -1
    # One grid per clip: its frames are sampled as the channels of one image.
    frames = x.reshape(n, t * c, h, w)
    grid = F.affine_grid(torch.from_numpy(theta), [n, t * c, h, w], align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(n, t, c, h, w)


def colour_jitter(
    x: torch.Tensor,
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    channel_shuffle: float,
) -> torch.Tensor:
    """Per-clip saturation, RGB order, contrast and brightness: ``(N, T, 3, H, W) float``.

    All four are affine in colour, so they run as one 3x3 matrix and offset per
    clip; the offset follows the clip's mean, so any intensity scale works.
    """
    n, t, channels, h, w = x.shape
    grey = np.array([0.299, 0.587, 0.114])
    matrices = np.empty((n, 3, 3), dtype=np.float32)
    gains = np.empty(n, dtype=np.float32)
    for i in range(n):
        s, c, b = rng.uniform(-1.0, 1.0, size=3) * (saturation, contrast, brightness) + 1.0
        m = s * np.eye(3) + (1.0 - s) * np.outer(np.ones(3), grey)
        if rng.random() < channel_shuffle:
            m = np.eye(3)[rng.permutation(3)] @ m
        matrices[i], gains[i] = b * c * m, b * (1.0 - c)
    flat = x.reshape(n, t, channels, h * w)
    mixed = (torch.from_numpy(matrices).view(n, 1, 3, 3) @ flat).view(x.shape)
    # Contrast pulls towards the clip's mean grey level (pre-transform, a close stand-in).
    mean = x.mean(dim=(1, 3, 4)) @ torch.from_numpy(grey.astype(np.float32))
    return mixed + (torch.from_numpy(gains) * mean).view(n, 1, 1, 1, 1)
