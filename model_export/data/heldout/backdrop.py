"""Backdrop: the world behind the objects, painted on a canvas in world coordinates.

A :class:`Backdrop` is a recipe (gradient, stripes, smooth noise, tiles,
blurred blobs, a horizon); :func:`paint_canvas` paints it over any window of the
world at any density, so a camera can pan and zoom over it. Every random draw
comes from the recipe's own seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model_export.data.heldout.paint import RGB, nearby_colour, random_colour

F32 = npt.NDArray[np.float32]

KINDS = ("linear", "radial", "stripes", "noise", "tiles", "blobs", "horizon")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backdrop:
    """A background recipe: ``kind``, a palette, a feature ``scale`` (world px), an ``angle``."""

    kind: str
    palette: tuple[RGB, ...]
    scale: float
    angle: float
    grain: float  # amplitude of fine static texture added on top, in [0, 1] units
    seed: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A canvas over the world: top-left world point ``(x0, y0)``, size in canvas px, density."""

    x0: float
    y0: float
    width: int
    height: int
    density: float  # canvas px per world px

    def world_axes(self) -> tuple[F32, F32]:
        """World coordinates of the canvas pixel centres: ``x (W,)``, ``y (H,)``."""
        xs = self.x0 + (np.arange(self.width, dtype=np.float32) + 0.5) / self.density
        ys = self.y0 + (np.arange(self.height, dtype=np.float32) + 0.5) / self.density
        return xs.astype(np.float32), ys.astype(np.float32)


def sample_backdrop(rng: np.random.Generator, *, short_side: int) -> Backdrop:
    """A random recipe: a kind, 2-4 colours, a feature scale of 5-50% of ``short_side``.

    Smooth kinds (gradients, horizon) take any colours; busy ones (noise, tiles,
    stripes, blobs) colours near one another, so that an object can stand out.
    """
    kind = KINDS[int(rng.integers(len(KINDS)))]
    count = int(rng.integers(2, 5))
    if kind in ("linear", "radial", "horizon"):
        palette = tuple(random_colour(rng) for _ in range(count))
    else:
        base = random_colour(rng)
        spread = float(rng.uniform(0.08, 0.3))
        palette = (base, *(nearby_colour(rng, base, spread) for _ in range(count - 1)))
    lo, hi = max(4.0, 0.05 * short_side), max(8.0, 0.5 * short_side)
    return Backdrop(
        kind=kind,
        palette=palette,
        scale=float(math.exp(rng.uniform(math.log(lo), math.log(hi)))),
        angle=float(rng.uniform(0, 180)),
        grain=float(rng.choice([0.0, 0.02, 0.05])),
        seed=int(rng.integers(2**31)),
    )


def _palette_map(t: F32, palette: tuple[RGB, ...]) -> F32:
    """Colours ``(..., 3)`` along the palette for ``t`` in ``[0, 1]`` (piecewise linear)."""
    cols = np.asarray(palette, dtype=np.float32)
    pos = np.clip(t, 0, 1) * np.float32(len(palette) - 1)
    i0 = np.minimum(pos.astype(np.int64), len(palette) - 2)
    f = (pos - i0)[..., None]
    out: F32 = cols[i0] * (1 - f) + cols[i0 + 1] * f
    return out


def value_noise(xs: F32, ys: F32, cell: float, rng: np.random.Generator) -> F32:
    """Smooth noise ``(H, W)`` in ``[0, 1]`` on a lattice of ``cell`` world px at ``ys x xs``."""
    gx, gy = xs / np.float32(cell), ys / np.float32(cell)
    ox, oy = math.floor(float(gx.min())), math.floor(float(gy.min()))
    rows_n = math.floor(float(gy.max())) - oy + 2
    cols_n = math.floor(float(gx.max())) - ox + 2
    lattice = rng.random((rows_n, cols_n)).astype(np.float32)
    ix, iy = np.floor(gx).astype(np.int64) - ox, np.floor(gy).astype(np.int64) - oy
    fx, fy = gx - np.floor(gx), gy - np.floor(gy)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    rows = lattice[iy] * (1 - fy)[:, None] + lattice[iy + 1] * fy[:, None]
    out: F32 = rows[:, ix] * (1 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]
    return out


def _along(xs: F32, ys: F32, angle: float) -> F32:
    """Distance ``(H, W)`` along direction ``angle`` (degrees) of each world point."""
    a = math.radians(angle)
    out: F32 = xs[None, :] * np.float32(math.cos(a)) + ys[:, None] * np.float32(math.sin(a))
    return out


def paint_canvas(recipe: Backdrop, window: Window) -> F32:
    """The backdrop over ``window`` as ``(height, width, 3)`` float32 RGB in ``[0, 1]``."""
    rng = np.random.default_rng(recipe.seed)
    xs, ys = window.world_axes()
    s = recipe.scale
    pal = recipe.palette
    match recipe.kind:
        case "linear":
            along = _along(xs, ys, recipe.angle)
            t = (along - along.mean()) / np.float32(8 * s + 200) + np.float32(0.5)
            img = _palette_map(np.clip(t, 0, 1).astype(np.float32), pal)
        case "radial":
            cx, cy = float(rng.uniform(xs.min(), xs.max())), float(rng.uniform(ys.min(), ys.max()))
            r = np.hypot(xs[None, :] - cx, ys[:, None] - cy) / np.float32(10 * s + 150)
            img = _palette_map(r.astype(np.float32), pal)
        case "stripes":
            t = _along(xs, ys, recipe.angle) / np.float32(max(s, 4.0))
            wave = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(2 * math.pi) * t)
            sharp = np.float32(rng.uniform(1.0, 6.0))
            img = _palette_map(np.clip((wave - 0.5) * sharp + 0.5, 0, 1).astype(np.float32), pal)
        case "noise":
            t = value_noise(xs, ys, 2.5 * s, rng) * np.float32(0.65)
            t += value_noise(xs, ys, 0.8 * s, rng) * np.float32(0.35)
            img = _palette_map(t, pal)
        case "tiles":
            img = _tiles(xs, ys, recipe, rng)
        case "blobs":
            img = _blobs(xs, ys, recipe, rng)
        case "horizon":
            img = _horizon(xs, ys, recipe, rng)
        case _:
            raise ValueError(f"unknown backdrop kind {recipe.kind!r}")
    if recipe.grain > 0:
        fine = value_noise(xs, ys, 1.5, rng) - np.float32(0.5)
        img = img + fine[..., None] * np.float32(2 * recipe.grain)
    return np.clip(img, 0, 1).astype(np.float32)


def _tiles(xs: F32, ys: F32, recipe: Backdrop, rng: np.random.Generator) -> F32:
    """Tiles or bricks ``(H, W, 3)`` from the palette, each tinted, with dark grout."""
    cell = max(recipe.scale, 8.0)
    ix = np.floor(xs / np.float32(cell)).astype(np.int64)
    iy = np.floor(ys / np.float32(cell)).astype(np.int64)
    bricks = bool(rng.random() < 0.5)
    if bricks:  # every other row shifted by half a tile
        shift = (np.mod(iy, 2) * (cell / 2)).astype(np.float32)
        ixb = np.floor((xs[None, :] + shift[:, None]) / np.float32(cell)).astype(np.int64)
    else:
        ixb = np.broadcast_to(ix[None, :], (len(ys), len(xs)))
    ox, oy = int(ixb.min()), int(iy.min())
    shape = (int(iy.max()) - oy + 1, int(ixb.max()) - ox + 1)
    table = rng.integers(len(recipe.palette), size=shape)
    tint = rng.uniform(0.85, 1.15, size=table.shape).astype(np.float32)
    cols = np.asarray(recipe.palette, dtype=np.float32)
    idx = (iy - oy)[:, None], ixb - ox
    img = cols[table[idx]] * tint[idx][..., None]
    grout = np.float32(rng.uniform(0.04, 0.12) * cell)
    fx = np.mod(xs[None, :] + (shift[:, None] if bricks else 0), np.float32(cell))
    fy = np.mod(ys, np.float32(cell))[:, None]
    line = np.minimum(np.minimum(fx, cell - fx), np.minimum(fy, cell - fy)) < grout / 2
    dark = np.float32(rng.uniform(0.3, 0.7))
    out: F32 = np.where(line[..., None], img * dark, img).astype(np.float32)
    return out


def _blobs(xs: F32, ys: F32, recipe: Backdrop, rng: np.random.Generator) -> F32:
    """Soft out-of-focus blobs over a smooth base: a blurred photograph's look."""
    base = _palette_map(value_noise(xs, ys, 6 * recipe.scale + 40, rng), recipe.palette[:2])
    img = base.copy()
    area = float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    count = int(np.clip(area / (60.0 * 60.0), 6, 40))
    for _ in range(count):
        cx, cy = rng.uniform(xs.min(), xs.max()), rng.uniform(ys.min(), ys.max())
        sigma = float(rng.uniform(0.3, 1.5) * recipe.scale + 4)
        col = np.asarray(random_colour(rng), dtype=np.float32)
        strength = np.float32(rng.uniform(0.3, 0.9))
        xi = np.flatnonzero(np.abs(xs - cx) < 3 * sigma)
        yi = np.flatnonzero(np.abs(ys - cy) < 3 * sigma)
        if len(xi) == 0 or len(yi) == 0:
            continue
        gx = np.exp(-0.5 * ((xs[xi] - cx) / sigma) ** 2).astype(np.float32)
        gy = np.exp(-0.5 * ((ys[yi] - cy) / sigma) ** 2).astype(np.float32)
        w = (gy[:, None] * gx[None, :] * strength)[..., None]
        patch = img[yi[0] : yi[-1] + 1, xi[0] : xi[-1] + 1]
        patch += (col - patch) * w
    return img


def _horizon(xs: F32, ys: F32, recipe: Backdrop, rng: np.random.Generator) -> F32:
    """A sky gradient over a textured ground, split at a gently tilted horizon."""
    pal = recipe.palette
    level = float(rng.uniform(ys.min(), ys.max()))
    tilt = math.tan(math.radians(rng.uniform(-8, 8)))
    edge = ys[:, None] - (level + (xs[None, :] - xs.mean()) * np.float32(tilt))
    span = np.float32(ys.max() - ys.min() + 1)
    sky = _palette_map(np.clip(0.5 + edge / span, 0, 1).astype(np.float32), pal[:2])
    ground_t = value_noise(xs, ys, 1.5 * recipe.scale + 4, rng)
    ground = _palette_map(ground_t, (pal[-1], pal[0] if len(pal) < 3 else pal[-2]))
    weight = np.clip(0.5 + edge, 0, 1)[..., None].astype(np.float32)
    out: F32 = sky * (1 - weight) + ground * weight
    return out
