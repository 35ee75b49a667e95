"""Shape: random silhouettes drawn as ``L`` masks, each inside a circle.

Every family draws into the disc of the given radius around the canvas centre, so a
shape can turn about that centre without leaving its sprite. Geometry comes from the
generator passed in: the same generator state draws the same shape.
"""

from __future__ import annotations

import string
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

Points = npt.NDArray[np.float64]  # (K, 2) x, y in units of the radius, y down

# Families whose silhouette alone can look unchanged after a turn (or mirror-like
# ones whose turn direction is hard to see); rotating scenes give them a marker.
SYMMETRIC = frozenset({"polygon", "star", "ellipse", "rectangle", "cross", "ring", "gear"})


def _turn(points: Points, angle: float) -> Points:
    c, s = np.cos(angle), np.sin(angle)
    return np.asarray(points @ np.array([[c, s], [-s, c]]), np.float64)


def _normalise(points: Points) -> Points:
    """Scale so the farthest point lies on the unit circle."""
    return points / float(np.max(np.hypot(points[:, 0], points[:, 1])))


def _circle(count: int) -> npt.NDArray[np.float64]:
    return np.linspace(0, 2 * np.pi, count, endpoint=False)


def _polygon(rng: np.random.Generator) -> Points:
    sides = int(rng.integers(3, 9))
    angles = _circle(sides) + rng.uniform(0, 2 * np.pi)
    radii = np.ones(sides)
    if rng.random() < 0.5:  # irregular
        angles += rng.uniform(-0.35, 0.35, sides) * (2 * np.pi / sides)
        radii = rng.uniform(0.55, 1.0, sides)
    return _normalise(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))


def _star(rng: np.random.Generator) -> Points:
    tips = int(rng.integers(4, 9))
    angles = _circle(2 * tips) + rng.uniform(0, 2 * np.pi)
    radii = np.tile([1.0, rng.uniform(0.35, 0.65)], tips)
    if rng.random() < 0.3:
        radii = radii * rng.uniform(0.75, 1.0, 2 * tips)
    return _normalise(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1))


def _ellipse(rng: np.random.Generator) -> Points:
    t = _circle(72)
    pts = np.stack([np.cos(t), rng.uniform(0.35, 0.95) * np.sin(t)], axis=1)
    return _turn(pts, rng.uniform(0, np.pi))


def _rectangle(rng: np.random.Generator) -> Points:
    half = np.arctan(rng.uniform(0.3, 1.0))  # half-angle of the diagonal
    corners = np.array([half, np.pi - half, np.pi + half, -half])
    pts = np.stack([np.cos(corners), np.sin(corners)], axis=1)
    return _turn(pts, rng.uniform(0, np.pi))


def _cross(rng: np.random.Generator) -> Points:
    w = rng.uniform(0.15, 0.35)
    arms = rng.uniform(0.55, 1.0, 4) if rng.random() < 0.5 else np.ones(4)
    r, d, left, up = arms
    pts = np.array(
        [
            *((w, -w), (r, -w), (r, w), (w, w), (w, d), (-w, d)),
            *((-w, w), (-left, w), (-left, -w), (-w, -w), (-w, -up), (w, -up)),
        ]
    )
    return _normalise(_turn(pts, rng.uniform(0, np.pi / 2)))


def _blob(rng: np.random.Generator) -> Points:
    t = _circle(96)
    radius = np.ones_like(t)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.3) / k * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return _normalise(np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1))


def _arrow(rng: np.random.Generator) -> Points:
    shaft = rng.uniform(0.12, 0.25)
    head_len = rng.uniform(0.4, 0.8)
    head = rng.uniform(0.45, 0.8)
    tip = 1.0 - head_len
    pts = np.array(
        [(-1, -shaft), (tip, -shaft), (tip, -head), (1, 0), (tip, head), (tip, shaft), (-1, shaft)]
    )
    return _normalise(_turn(pts, rng.uniform(0, 2 * np.pi)))


def _ring(rng: np.random.Generator) -> Points:
    inner = rng.uniform(0.45, 0.75)
    gap = rng.uniform(0.4, 1.4)
    t = np.linspace(gap / 2, 2 * np.pi - gap / 2, 64) + rng.uniform(0, 2 * np.pi)
    outer = np.stack([np.cos(t), np.sin(t)], axis=1)
    return np.concatenate([outer, inner * outer[::-1]])


def _heart(rng: np.random.Generator) -> Points:
    t = _circle(96)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y + 2.5], axis=1)
    return _normalise(_turn(pts, rng.uniform(-0.6, 0.6)))


def _gear(rng: np.random.Generator) -> Points:
    teeth = int(rng.integers(6, 13))
    t = _circle(teeth * 12) + rng.uniform(0, 2 * np.pi)
    square = np.clip(3 * np.sin(teeth * t), -1, 1)
    radius = 1.0 - rng.uniform(0.12, 0.25) * (1 - square) / 2
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


OUTLINES: dict[str, Callable[[np.random.Generator], Points]] = {
    "polygon": _polygon,
    "star": _star,
    "ellipse": _ellipse,
    "rectangle": _rectangle,
    "cross": _cross,
    "blob": _blob,
    "arrow": _arrow,
    "ring": _ring,
    "heart": _heart,
    "gear": _gear,
}
SHAPES = (*OUTLINES, "crescent", "glyph")
GLYPHS = string.ascii_uppercase + "23456789"


def _glyph(side: int, radius: float, rng: np.random.Generator) -> Image.Image:
    char = GLYPHS[int(rng.integers(len(GLYPHS)))]
    size = max(8, round(radius * 2))
    font = ImageFont.load_default(size=size)
    stroke = int(rng.integers(0, max(1, size // 16) + 1))
    scratch = Image.new("L", (size * 3, size * 3), 0)
    ImageDraw.Draw(scratch).text(
        (size * 1.5, size * 1.5), char, fill=255, font=font, anchor="mm", stroke_width=stroke
    )
    box = scratch.getbbox()
    mask = Image.new("L", (side, side), 0)
    if box is None:
        return mask
    glyph = scratch.crop(box)
    # Fit the glyph's box inside the circle: its half-diagonal becomes the radius.
    scale = radius / (0.5 * float(np.hypot(glyph.width, glyph.height)))
    size_wh = (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale)))
    glyph = glyph.resize(size_wh, Image.Resampling.BICUBIC)
    glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.Resampling.BICUBIC)
    mask.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return mask


def _crescent(side: int, radius: float, rng: np.random.Generator) -> Image.Image:
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    c = side / 2
    draw.ellipse((c - radius, c - radius, c + radius, c + radius), fill=255)
    direction = rng.uniform(0, 2 * np.pi)
    offset = radius * rng.uniform(0.35, 0.7)
    bite = radius * rng.uniform(0.7, 0.95)
    bx, by = c + offset * np.cos(direction), c + offset * np.sin(direction)
    draw.ellipse((bx - bite, by - bite, bx + bite, by + bite), fill=0)
    return mask


def shape_mask(kind: str, side: int, radius: float, rng: np.random.Generator) -> Image.Image:
    """A ``side`` x ``side`` ``L`` mask (0 or 255) of shape ``kind`` within ``radius``."""
    if kind == "glyph":
        return _glyph(side, radius, rng)
    if kind == "crescent":
        return _crescent(side, radius, rng)
    points = OUTLINES[kind](rng) * radius + side / 2
    mask = Image.new("L", (side, side), 0)
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in points], fill=255)
    return mask
