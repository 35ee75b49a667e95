"""Texture: vectorised two-colour fills for object sprites and backgrounds.

Every fill is a scalar field ``t`` in ``[0, 1]`` (``(H, W) float32``) mixed between two
colours. Pattern scales are relative to the shorter side, so a fill looks the same at
any resolution (the whole-view zoom renders its world at a higher one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from PIL import Image

RGB = tuple[int, int, int]
Field = npt.NDArray[np.float32]
Pixels = npt.NDArray[np.uint8]
Grid = tuple[Field, Field]


def _grid(width: int, height: int, unit: float) -> Grid:
    """Centred coordinates in units of ``unit`` px: ``(1, W)`` and ``(H, 1)``."""
    u = ((np.arange(width, dtype=np.float32) + 0.5 - width / 2) / np.float32(unit))[None, :]
    v = ((np.arange(height, dtype=np.float32) + 0.5 - height / 2) / np.float32(unit))[:, None]
    return u, v


def _project(grid: Grid, angle: float) -> Field:
    u, v = grid
    return np.float32(np.cos(angle)) * u + np.float32(np.sin(angle)) * v


def _solid(grid: Grid, rng: np.random.Generator) -> Field:
    u, v = grid
    return np.zeros((v.shape[0], u.shape[1]), dtype=np.float32)


def _linear(grid: Grid, rng: np.random.Generator) -> Field:
    gain = np.float32(rng.uniform(0.6, 1.6))
    projection = _project(grid, rng.uniform(0, 2 * np.pi))
    return (np.float32(0.5) + gain * projection).astype(np.float32)


def _radial(grid: Grid, rng: np.random.Generator) -> Field:
    u, v = grid
    cu, cv = rng.uniform(-0.3, 0.3, size=2)
    radius = rng.uniform(0.3, 0.9)
    dist = np.sqrt((u - np.float32(cu)) ** 2 + (v - np.float32(cv)) ** 2)
    return (dist / np.float32(radius)).astype(np.float32)


def _stripes(grid: Grid, rng: np.random.Generator) -> Field:
    # A clipped cosine rather than a step: soft edges that do not alias when resampled.
    period = rng.uniform(0.07, 0.3)
    phase = rng.uniform(0, 2 * np.pi)
    duty = np.cos(np.pi * rng.uniform(0.3, 0.7))
    wave = np.cos(np.float32(2 * np.pi / period) * _project(grid, rng.uniform(0, np.pi)) + phase)
    sharpness = np.float32(rng.uniform(2.0, 6.0))
    return np.asarray(np.float32(0.5) + sharpness * (wave - np.float32(duty)), np.float32)


def _checker(grid: Grid, rng: np.random.Generator) -> Field:
    cell = rng.uniform(0.06, 0.25)
    angle = rng.uniform(0, np.pi / 2)
    k = np.float32(np.pi / cell)
    a = np.sin(k * _project(grid, angle))
    b = np.sin(k * _project(grid, angle + np.pi / 2))
    sharpness = np.float32(rng.uniform(2.0, 6.0))
    return np.asarray(np.float32(0.5) + sharpness * a * b, np.float32)


def _noise(grid: Grid, rng: np.random.Generator) -> Field:
    u, v = grid
    width, height = u.shape[1], v.shape[0]
    unit = 1.0 / float(u[0, 1] - u[0, 0]) if width > 1 else float(width)  # px per unit
    cells = rng.uniform(2.0, 10.0)  # value-noise cells per unit length
    gw = max(2, round(cells * width / unit))
    gh = max(2, round(cells * height / unit))
    coarse = Image.fromarray(rng.random((gh, gw), dtype=np.float32), mode="F")
    field = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    lo, hi = float(field.min()), float(field.max())
    return (field - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))


def _dots(grid: Grid, rng: np.random.Generator) -> Field:
    spacing = rng.uniform(0.08, 0.25)
    radius = spacing * rng.uniform(0.2, 0.42)
    a = _project(grid, rng.uniform(0, np.pi / 2)) / np.float32(spacing)
    b = _project(grid, rng.uniform(np.pi / 3, 2 * np.pi / 3)) / np.float32(spacing)
    da = a - np.round(a)
    db = b - np.round(b)
    dist = np.sqrt(da * da + db * db) * np.float32(spacing)
    edge = (np.float32(radius) - dist) / np.float32(radius * 0.3)
    return np.asarray(edge + np.float32(0.5), np.float32)


def _plasma(grid: Grid, rng: np.random.Generator) -> Field:
    total: Field | None = None
    for _ in range(3):
        freq = np.float32(2 * np.pi * rng.uniform(1.0, 5.0))
        wave = np.sin(freq * _project(grid, rng.uniform(0, 2 * np.pi)) + rng.uniform(0, 6.3))
        total = wave if total is None else total + wave
    assert total is not None
    return np.float32(0.5) + total / np.float32(6.0)


FILLS: dict[str, Callable[[Grid, np.random.Generator], Field]] = {
    "solid": _solid,
    "linear": _linear,
    "radial": _radial,
    "stripes": _stripes,
    "checker": _checker,
    "noise": _noise,
    "dots": _dots,
    "plasma": _plasma,
}


def fill_field(
    kind: str, width: int, height: int, rng: np.random.Generator, *, unit: float | None = None
) -> Field:
    """The mixing field of fill ``kind``: ``(H, W) float32`` in ``[0, 1]``.

    Pattern sizes are in ``unit`` px (default: the shorter side).
    """
    field = FILLS[kind](_grid(width, height, unit or min(width, height)), rng)
    return np.clip(field, 0.0, 1.0, out=field)


def texture(
    kind: str,
    width: int,
    height: int,
    colours: tuple[RGB, RGB],
    rng: np.random.Generator,
    *,
    unit: float | None = None,
) -> Pixels:
    """Fill ``kind`` mixed between two colours: ``(H, W, 3) uint8`` (sizes in ``unit`` px)."""
    t = fill_field(kind, width, height, rng, unit=unit)[..., None]
    c1 = np.asarray(colours[0], np.float32)
    c2 = np.asarray(colours[1], np.float32)
    return (c1 + t * (c2 - c1) + np.float32(0.5)).astype(np.uint8)
