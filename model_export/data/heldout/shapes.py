"""Shapes: signed distance fields of the primitives, in the object's own unit frame.

Every field takes local coordinates ``u, v`` (any equal shapes, float32; ``v``
points down, the object's radius is about 1) and returns the signed distance to
the outline in the same units, negative inside. Fields are exact or close to it
near the outline, which is all the anti-aliasing in :mod:`.sprite` needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Segment = tuple[float, float, float, float]

# Letters as strokes (x0, y0, x1, y1) in a [-0.75, 0.75] box, y down.
_P_BOWL: tuple[Segment, ...] = (
    (-0.5, 0.75, -0.5, -0.75),
    (-0.5, -0.75, 0.35, -0.75),
    (0.35, -0.75, 0.55, -0.5),
    (0.55, -0.5, 0.55, -0.25),
    (0.55, -0.25, 0.35, 0.0),
    (0.35, 0.0, -0.5, 0.0),
)
GLYPHS: dict[str, tuple[Segment, ...]] = {
    "F": ((-0.5, -0.75, -0.5, 0.75), (-0.5, -0.75, 0.55, -0.75), (-0.5, -0.05, 0.3, -0.05)),
    "L": ((-0.45, -0.75, -0.45, 0.75), (-0.45, 0.75, 0.5, 0.75)),
    "E": (
        (-0.5, -0.75, -0.5, 0.75),
        (-0.5, -0.75, 0.55, -0.75),
        (-0.5, 0.0, 0.3, 0.0),
        (-0.5, 0.75, 0.55, 0.75),
    ),
    "T": ((-0.65, -0.75, 0.65, -0.75), (0.0, -0.75, 0.0, 0.75)),
    "K": ((-0.5, -0.75, -0.5, 0.75), (0.55, -0.75, -0.5, 0.1), (-0.15, -0.15, 0.55, 0.75)),
    "Y": ((-0.6, -0.75, 0.0, 0.0), (0.6, -0.75, 0.0, 0.0), (0.0, 0.0, 0.0, 0.75)),
    "4": ((0.3, 0.75, 0.3, -0.75), (0.3, -0.75, -0.6, 0.3), (-0.6, 0.3, 0.6, 0.3)),
    "7": ((-0.6, -0.75, 0.6, -0.75), (0.6, -0.75, -0.2, 0.75)),
    "P": _P_BOWL,
    "R": (*_P_BOWL, (0.0, 0.0, 0.55, 0.75)),
    "J": (
        (0.3, -0.75, 0.3, 0.45),
        (0.3, 0.45, 0.05, 0.75),
        (0.05, 0.75, -0.3, 0.75),
        (-0.3, 0.75, -0.5, 0.5),
    ),
    "Z": ((-0.6, -0.75, 0.6, -0.75), (0.6, -0.75, -0.6, 0.75), (-0.6, 0.75, 0.6, 0.75)),
    "5": (
        (0.55, -0.75, -0.45, -0.75),
        (-0.45, -0.75, -0.45, -0.05),
        (-0.45, -0.05, 0.35, -0.05),
        (0.35, -0.05, 0.55, 0.2),
        (0.55, 0.2, 0.55, 0.5),
        (0.55, 0.5, 0.3, 0.75),
        (0.3, 0.75, -0.5, 0.75),
    ),
}
# Glyphs that look the same after half a turn.
HALF_TURN_GLYPHS = frozenset("Z")

ARROW_HEAD = ((0.15, -0.55), (0.9, 0.0), (0.15, 0.55))


@dataclass(frozen=True, slots=True)
class Shape:
    """A primitive (``kind`` with its ``params``), optionally hollow, or a cluster of parts.

    Kinds and params: ``disc (r,)``, ``ring (r, half_width)``, ``box (hx, hy, corner)``,
    ``ngon (n, r)``, ``star (n, r_out, r_in)``, ``cross (arm, half_width)``,
    ``arrow (shaft_half_width,)``, ``crescent (cut_dx, cut_dy, cut_r)``,
    ``blob (k, amp, phase, ...)`` harmonic triples, ``glyph ()`` with ``glyph``,
    ``cluster ()`` with ``parts`` (shape, du, dv, scale), ``knobbed ()``: a shape (the
    first part) with a knob on its rim (the second). ``hollow > 0`` keeps a band
    of that half width around the outline.
    """

    kind: str
    params: tuple[float, ...] = ()
    glyph: str = ""
    parts: tuple[tuple[Shape, float, float, float], ...] = field(default=())
    hollow: float = 0.0


def _hypot(u: npt.NDArray[np.floating[Any]], v: npt.NDArray[np.floating[Any]]) -> F32:
    """Euclidean norm ``sqrt(u^2 + v^2)``, float32, same shape."""
    out: F32 = np.sqrt(u * u + v * v).astype(np.float32, copy=False)
    return out


def disc(u: F32, v: F32, r: float) -> F32:
    """Distance to a circle of radius ``r`` about the origin."""
    return _hypot(u, v) - np.float32(r)


def box(u: F32, v: F32, hx: float, hy: float, corner: float = 0.0) -> F32:
    """Distance to an axis-aligned box of half sizes ``hx, hy`` with rounded ``corner``."""
    qx = np.abs(u) - np.float32(hx - corner)
    qy = np.abs(v) - np.float32(hy - corner)
    outside = _hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    inside = np.minimum(np.maximum(qx, qy), 0)
    return outside + inside - np.float32(corner)


def convex(u: F32, v: F32, points: tuple[tuple[float, float], ...]) -> F32:
    """Distance to a convex polygon with clockwise-on-screen vertices ``points``.

    The largest signed distance to an edge line: exact inside, a close bound outside.
    """
    out: F32 | None = None
    n = len(points)
    for i in range(n):
        (x0, y0), (x1, y1) = points[i], points[(i + 1) % n]
        ex, ey = x1 - x0, y1 - y0
        norm = math.hypot(ex, ey)
        # Outward normal of a clockwise (y down) polygon: (ey, -ex) / |e|.
        nx, ny = np.float32(ey / norm), np.float32(-ex / norm)
        d = (u - np.float32(x0)) * nx + (v - np.float32(y0)) * ny
        out = d if out is None else np.maximum(out, d)
    assert out is not None
    return out


def ngon(u: F32, v: F32, n: int, r: float) -> F32:
    """Distance to a regular ``n``-gon of circumradius ``r`` with a vertex pointing up."""
    step = 2 * math.pi / n
    pts = tuple(
        (r * math.sin(i * step), -r * math.cos(i * step)) for i in range(n)
    )  # clockwise on screen from the top
    return convex(u, v, pts)


def star(u: F32, v: F32, n: int, r_out: float, r_in: float) -> F32:
    """Distance to an ``n``-pointed star (tips at ``r_out``, notches at ``r_in``)."""
    sector = np.float32(2 * math.pi / n)
    a = np.mod(np.arctan2(v, u), sector)
    a = np.minimum(a, sector - a)  # fold: tip at 0, notch at sector / 2
    rho = _hypot(u, v)
    px = (rho * np.cos(a)).astype(np.float32, copy=False)
    py = (rho * np.sin(a)).astype(np.float32, copy=False)
    half = math.pi / n
    ax, ay = r_out, 0.0
    ex, ey = r_in * math.cos(half) - ax, r_in * math.sin(half) - ay
    wx, wy = px - np.float32(ax), py - np.float32(ay)
    h = np.clip((wx * np.float32(ex) + wy * np.float32(ey)) / np.float32(ex * ex + ey * ey), 0, 1)
    h = h.astype(np.float32, copy=False)
    dist = _hypot(wx - np.float32(ex) * h, wy - np.float32(ey) * h)
    inside = (np.float32(ex) * wy - np.float32(ey) * wx) > 0
    return np.where(inside, -dist, dist).astype(np.float32)


def segments(u: F32, v: F32, strokes: tuple[Segment, ...], half_width: float) -> F32:
    """Distance to the union of capsules of ``half_width`` around line ``strokes``."""
    best: F32 | None = None
    for x0, y0, x1, y1 in strokes:
        ex, ey = np.float32(x1 - x0), np.float32(y1 - y0)
        wx, wy = u - np.float32(x0), v - np.float32(y0)
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1).astype(np.float32, copy=False)
        d = _hypot(wx - ex * h, wy - ey * h)
        best = d if best is None else np.minimum(best, d)
    assert best is not None
    return best - np.float32(half_width)


def blob(u: F32, v: F32, harmonics: tuple[float, ...]) -> F32:
    """Distance (approximate) to a wobbly disc: radius ``0.8 (1 + sum a cos(k t + p))``."""
    theta = np.arctan2(v, u)
    radius = np.ones_like(u)
    for k, amp, phase in zip(harmonics[0::3], harmonics[1::3], harmonics[2::3], strict=True):
        radius += np.float32(amp) * np.cos(np.float32(k) * theta + np.float32(phase))
    return (_hypot(u, v) - np.float32(0.8) * radius) * np.float32(0.8)


def sdf(shape: Shape, u: F32, v: F32) -> F32:
    """The signed distance field of ``shape`` at local points ``u, v`` (same shape out)."""
    d = _solid(shape, u, v)
    if shape.hollow > 0:
        d = np.abs(d) - np.float32(shape.hollow)
    return d


def _solid(shape: Shape, u: F32, v: F32) -> F32:
    """The filled shape's distance field (before ``hollow``)."""
    p = shape.params
    match shape.kind:
        case "disc":
            return disc(u, v, p[0])
        case "ring":
            return np.abs(disc(u, v, p[0])) - np.float32(p[1])
        case "box":
            return box(u, v, p[0], p[1], p[2])
        case "ngon":
            return ngon(u, v, int(p[0]), p[1])
        case "star":
            return star(u, v, int(p[0]), p[1], p[2])
        case "cross":
            return np.minimum(box(u, v, p[0], p[1]), box(u, v, p[1], p[0]))
        case "arrow":
            shaft = box(u - np.float32(-0.3), v, 0.5, p[0])
            return np.minimum(shaft, convex(u, v, ARROW_HEAD))
        case "crescent":
            cut = disc(u - np.float32(p[0]), v - np.float32(p[1]), p[2])
            return np.maximum(disc(u, v, 0.9), -cut)
        case "blob":
            return blob(u, v, p)
        case "glyph":
            return segments(u, v, GLYPHS[shape.glyph], 0.17)
        case "cluster" | "knobbed":
            out: F32 | None = None
            for part, du, dv, scale in shape.parts:
                s = np.float32(scale)
                d = sdf(part, (u - np.float32(du)) / s, (v - np.float32(dv)) / s) * s
                out = d if out is None else np.minimum(out, d)
            assert out is not None
            return out
    raise ValueError(f"unknown shape kind {shape.kind!r}")


def turn_period(shape: Shape) -> float:
    """Degrees of the smallest turn that maps ``shape`` onto itself (0: any turn does)."""
    p = shape.params
    match shape.kind:
        case "disc" | "ring":
            return 0.0
        case "box":
            return 90.0 if math.isclose(p[0], p[1]) else 180.0
        case "ngon" | "star":
            return 360.0 / p[0]
        case "cross":
            return 90.0
        case "blob":
            ks = [int(k) for k in p[0::3]]
            return 360.0 / math.gcd(*ks) if ks else 0.0
        case "glyph":
            return 180.0 if shape.glyph in HALF_TURN_GLYPHS else 360.0
        case "cluster":
            return 360.0 if len({part for part, *_ in shape.parts}) > 1 else 0.0
        case "knobbed":
            return 360.0
    return 360.0
