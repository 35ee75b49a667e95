"""Sprite: one textured object, pre-rendered once, placed per frame by an affine warp.

A sprite is drawn once, supersampled, as a small pyramid of RGBA images (level ``L``
has half the radius of level ``L - 1``); each frame picks the level nearest its
on-screen size and warps it with PIL, so a clip costs one small resample per frame.

Angles are degrees and positive angles turn **clockwise on screen**: with image
coordinates (x right, y down) the sprite point at screen angle ``atan2(dy, dx) = phi``
appears at ``phi + angle``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from model_export.data.synth.shape import shape_mask
from model_export.data.synth.texture import RGB, texture

# Largest supersampled canvas side: bounds the one-off drawing cost of big sprites.
_MAX_MASTER_SIDE = 1024
_BORDER = 2  # px of transparent margin around the circle, for the resampling kernels


@dataclass(frozen=True, slots=True)
class SpriteSpec:
    """What to draw; all geometry and texture randomness comes from ``seed``."""

    shape: str
    texture: str
    colours: tuple[RGB, RGB]
    marker: RGB | None  # colour of an off-centre disc that shows turns; None = none
    seed: int


@dataclass(frozen=True, slots=True)
class Sprite:
    """RGBA pyramid of one object; ``markers`` are ``L`` masks of its marker, if asked."""

    levels: tuple[Image.Image, ...]
    markers: tuple[Image.Image, ...]
    radius: float  # px radius of the object's circle at level 0


@dataclass(frozen=True, slots=True)
class Patch:
    """A warped sprite ready to paste at ``(x, y)``: RGBA image (and marker ``L`` mask)."""

    image: Image.Image
    x: int
    y: int
    marker: Image.Image | None


def _marker_disc(
    mask: npt.NDArray[np.uint8], radius: float, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Centre and radius of an off-centre marker disc inside ``mask`` (``(S, S)`` uint8)."""
    side = mask.shape[0]
    centre = side / 2
    stride = max(1, side // 128)
    inside = np.argwhere(mask[::stride, ::stride] > 127).astype(np.float64) * stride
    dist = np.hypot(inside[:, 0] - centre, inside[:, 1] - centre)
    far = inside[dist >= 0.3 * radius]
    candidates = far if len(far) else inside
    if len(candidates) == 0:
        return centre, centre, radius * 0.1
    size = radius * rng.uniform(0.15, 0.27)
    ring = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    picks = candidates[rng.integers(len(candidates), size=48)]
    # Thin shapes get a smaller disc: shrink until one fits, else take the last pick.
    for shrink in (1.0, 0.7, 0.5, 0.35):
        r = size * shrink
        for py, px in picks[:12] if shrink < 1.0 else picks:
            xs = np.clip(np.round(px + 1.1 * r * np.cos(ring)).astype(int), 0, side - 1)
            ys = np.clip(np.round(py + 1.1 * r * np.sin(ring)).astype(int), 0, side - 1)
            if bool(np.all(mask[ys, xs] > 127)):
                return float(px), float(py), float(r)
    py, px = picks[0]
    return float(px), float(py), float(size * 0.35)


def build_sprite(
    spec: SpriteSpec, radius: float, *, levels: int = 1, markers: bool = False
) -> Sprite:
    """Draw ``spec`` with a circle of ``radius`` px at level 0 and ``levels`` levels.

    ``markers`` also keeps the marker's own mask (tests use it to track turns).
    """
    rng = np.random.default_rng(spec.seed)
    step = 2 ** (levels - 1)
    side = math.ceil((2 * radius + 2 * _BORDER) / step) * step
    ss = max(1, min(4, _MAX_MASTER_SIDE // side))
    master_side, master_radius = side * ss, radius * ss
    alpha = np.asarray(shape_mask(spec.shape, master_side, master_radius, rng), np.uint8)
    rgb = texture(spec.texture, master_side, master_side, spec.colours, rng)
    marker_img: Image.Image | None = None
    if spec.marker is not None:
        mx, my, mr = _marker_disc(alpha, master_radius, rng)
        marker_img = Image.new("L", (master_side, master_side), 0)
        ImageDraw.Draw(marker_img).ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=255)
        weight = np.asarray(marker_img, np.float32)[..., None] / np.float32(255)
        colour = np.asarray(spec.marker, np.float32)
        rgb = (rgb * (1 - weight) + colour * weight + 0.5).astype(np.uint8)
        alpha = np.maximum(alpha, np.asarray(marker_img, np.uint8))
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA").reduce(ss)
    pyramid = [rgba]
    marker_pyramid = [marker_img.reduce(ss)] if markers and marker_img is not None else []
    for _ in range(levels - 1):
        pyramid.append(pyramid[-1].reduce(2))
        if marker_pyramid:
            marker_pyramid.append(marker_pyramid[-1].reduce(2))
    return Sprite(levels=tuple(pyramid), markers=tuple(marker_pyramid), radius=radius)


def place(
    sprite: Sprite,
    *,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    frame: tuple[int, int],
    marker: bool = False,
) -> Patch | None:
    """Warp ``sprite`` to ``centre`` (px, continuous), ``radius`` px, turned ``angle``.

    Only the part inside ``frame`` (width, height) is rendered; None when nothing is.
    """
    level = int(
        np.clip(round(-math.log2(max(radius, 1e-6) / sprite.radius)), 0, len(sprite.levels) - 1)
    )
    image = sprite.levels[level]
    m = radius / (sprite.radius / 2**level)  # screen px per sprite px
    cx, cy = centre
    half = radius + 2 * max(m, 1.0)
    x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    x1, y1 = min(frame[0], math.ceil(cx + half)), min(frame[1], math.ceil(cy + half))
    if x1 <= x0 or y1 <= y0:
        return None
    theta = math.radians(angle)
    c, s = math.cos(theta), math.sin(theta)
    sc = image.width / 2
    # Output (continuous) point p maps to sprite point sc + R(-angle) (p - centre) / m.
    coeffs = (
        c / m,
        s / m,
        sc + (c * (x0 - cx) + s * (y0 - cy)) / m,
        -s / m,
        c / m,
        sc + (-s * (x0 - cx) + c * (y0 - cy)) / m,
    )
    size = (x1 - x0, y1 - y0)
    warp = Image.Transform.AFFINE
    patch = image.transform(size, warp, coeffs, resample=Image.Resampling.BILINEAR)
    marker_patch = None
    if marker and sprite.markers:
        marker_patch = sprite.markers[level].transform(
            size, warp, coeffs, resample=Image.Resampling.BILINEAR
        )
    return Patch(image=patch, x=x0, y=y0, marker=marker_patch)
