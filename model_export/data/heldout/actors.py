"""Actors: what is on screen and where each thing is at every frame.

A :class:`Look` is a shape with its paint; an :class:`Actor` is a look with a
per-frame pose in world pixels; the :class:`Camera` maps the world to the
screen. ``sample_look`` draws a random look; ``turn_legible`` makes sure a
turn of it can be seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model_export.data.heldout.paint import FILLS, RGB, Paint, contrasting, luma, random_colour
from model_export.data.heldout.shapes import GLYPHS, Shape, sdf, turn_period

F64 = npt.NDArray[np.float64]

HERO_KINDS = ("disc", "ring", "box", "ngon", "star", "cross", "arrow", "crescent", "blob", "glyph",
              "cluster")  # fmt: skip
DISTRACTOR_KINDS = tuple(k for k in HERO_KINDS if k != "cluster")  # one thing each, no groups


@dataclass(frozen=True, slots=True)
class Look:
    """How an object looks: its outline and its paint."""

    shape: Shape
    paint: Paint


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A look over the clip: ``centre (N, 2)`` and ``radius (N,)`` in world px,
    ``angle (N,)`` degrees clockwise on screen, ``opacity (N,)`` in ``[0, 1]``."""

    look: Look
    centre: F64
    radius: F64
    angle: F64
    opacity: F64
    behaviour: str


@dataclass(frozen=True, slots=True)
class Camera:
    """The world point at the screen's centre, ``centre (N, 2)``, and ``zoom (N,)``.

    World point ``q`` appears on screen at ``(W/2, H/2) + zoom * (q - centre)``.
    """

    centre: F64
    zoom: F64

    def is_still(self) -> bool:
        """True when every frame sees the same view (the background is drawn once)."""
        return bool(np.ptp(self.centre, axis=0).max() < 1e-9 and np.ptp(self.zoom) < 1e-9)

    def to_screen(self, points: F64, width: int, height: int) -> F64:
        """World ``points (N, 2)`` (one per frame) on screen ``(N, 2)``."""
        half = np.array([width / 2, height / 2])
        out: F64 = half + self.zoom[:, None] * (points - self.centre)
        return out


def still(n: int, width: int, height: int) -> Camera:
    """A camera that never moves, showing world ``[0, W] x [0, H]``."""
    return Camera(np.tile([width / 2, height / 2], (n, 1)).astype(np.float64), np.ones(n))


def _shape(rng: np.random.Generator, kind: str) -> Shape:
    """A random shape of ``kind`` (15% of the fillable ones hollow)."""
    hollow = float(rng.uniform(0.08, 0.16)) if rng.random() < 0.15 else 0.0
    match kind:
        case "disc":
            return Shape("disc", (0.9,), hollow=hollow)
        case "ring":
            return Shape("ring", (0.75, float(rng.uniform(0.12, 0.25))))
        case "box":
            hx = float(rng.uniform(0.55, 0.85))
            hy = hx if rng.random() < 0.4 else float(rng.uniform(0.35, 0.85))
            return Shape("box", (hx, hy, float(rng.uniform(0, 0.25))), hollow=hollow)
        case "ngon":
            return Shape("ngon", (int(rng.integers(3, 9)), 0.95), hollow=hollow)
        case "star":
            n = int(rng.integers(3, 8))
            return Shape("star", (n, 1.0, float(rng.uniform(0.35, 0.6))), hollow=hollow)
        case "cross":
            return Shape("cross", (0.9, float(rng.uniform(0.18, 0.32))), hollow=hollow)
        case "arrow":
            return Shape("arrow", (float(rng.uniform(0.14, 0.26)),))
        case "crescent":
            cut = (float(rng.uniform(0.3, 0.55)), float(rng.uniform(-0.2, 0.2)))
            return Shape("crescent", (*cut, float(rng.uniform(0.6, 0.8))))
        case "blob":
            harmonics: list[float] = []
            for k in rng.choice([2, 3, 4, 5], size=int(rng.integers(1, 4)), replace=False):
                harmonics += [float(k), float(rng.uniform(0.05, 0.16)), float(rng.uniform(0, 6.3))]
            return Shape("blob", tuple(harmonics))
        case "glyph":
            return Shape("glyph", glyph=str(rng.choice(sorted(GLYPHS))))
        case "cluster":
            return _cluster(rng)
    raise ValueError(f"unknown shape kind {kind!r}")


def _cluster(rng: np.random.Generator) -> Shape:
    """3-5 small parts on a circle, one of them different (so the group has no symmetry)."""
    n = int(rng.integers(3, 6))
    common = _shape(rng, str(rng.choice(["disc", "box", "star", "ngon"])))
    odd = _shape(rng, str(rng.choice(["cross", "arrow", "glyph"])))
    start = float(rng.uniform(0, 2 * math.pi))
    parts = []
    for i in range(n):
        a = start + 2 * math.pi * i / n
        part, scale = (odd, 0.42) if i == 0 else (common, 0.3)
        parts.append((part, 0.62 * math.cos(a), 0.62 * math.sin(a), scale))
    return Shape("cluster", parts=tuple(parts))


def sample_look(
    rng: np.random.Generator,
    *,
    against: Sequence[RGB],
    kinds: tuple[str, ...] = HERO_KINDS,
    contrast: float = 0.55,
    rim_chance: float = 0.35,
) -> Look:
    """A random look from ``kinds`` whose colours stand out from all of ``against``.

    With probability ``rim_chance`` it gets an outline, dark on light surroundings
    and light on dark ones.
    """
    shape = _shape(rng, str(rng.choice(kinds)))
    first = contrasting(rng, against, min_distance=contrast)
    second = contrasting(rng, against, min_distance=contrast * 0.8)
    fill = str(rng.choice(FILLS))
    rim: RGB | None = None
    if rng.random() < rim_chance:
        light = float(np.mean([luma(c) for c in against])) < 0.5
        rim = (0.95, 0.95, 0.95) if light else (0.05, 0.05, 0.05)
    paint = Paint(
        fill=fill,
        first=first,
        second=second,
        period=float(rng.uniform(0.25, 0.7)),
        angle=float(rng.uniform(0, 180)),
        rim=rim,
        rim_width=float(rng.uniform(0.05, 0.12)),
    )
    return Look(shape, paint)


def _rim_distance(shape: Shape, angle: float) -> float:
    """How far from the centre the outline of ``shape`` lies in direction ``angle`` (radians)."""
    t = np.linspace(0.0, 1.1, 111, dtype=np.float32)
    inside = sdf(shape, t * np.float32(math.cos(angle)), t * np.float32(math.sin(angle))) <= 0
    hits = np.flatnonzero(inside)
    return float(t[hits[-1]]) if len(hits) else 0.5


def turn_legible(look: Look, rng: np.random.Generator) -> Look:
    """``look`` with a knob on its rim when some turn would map its outline onto itself.

    The knob is part of the outline (so the silhouette alone shows the turn, hollow
    shapes included) and painted in a contrasting colour.
    """
    if turn_period(look.shape) >= 360.0:
        return look
    a = float(rng.uniform(0, 2 * math.pi))
    dist = min(0.95, _rim_distance(look.shape, a))
    knob = float(rng.uniform(0.16, 0.22))
    du, dv = dist * math.cos(a), dist * math.sin(a)
    shape = Shape(
        "knobbed", parts=((look.shape, 0.0, 0.0, 1.0), (Shape("disc", (1.0,)), du, dv, knob))
    )
    p = look.paint
    paint = Paint(
        fill=p.fill,
        first=p.first,
        second=p.second,
        period=p.period,
        angle=p.angle,
        rim=p.rim,
        rim_width=p.rim_width,
        marker=(du, dv, knob),
        marker_colour=contrasting(rng, [p.first], min_distance=0.7),
    )
    return Look(shape, paint)


def watermark_look(rng: np.random.Generator) -> Look:
    """A flat light or dark glyph or badge, as broadcasters stamp in a corner."""
    kind = str(rng.choice(["glyph", "disc", "box", "star"]))
    shade = (0.95, 0.95, 0.95) if rng.random() < 0.6 else random_colour(rng)
    return Look(_shape(rng, kind), Paint(fill="solid", first=shade, second=shade))
