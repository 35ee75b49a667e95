"""Paint: how an object's inside looks, as colours over its local unit frame.

A :class:`Paint` fills a shape (solid, gradient, stripes, checks, dots, rings),
optionally rims it with an outline band and puts a marker dot off its centre
(so a turn of an otherwise symmetric object shows). Pattern edges are
anti-aliased by the pixel footprint ``pix`` (local units per screen pixel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
RGB = tuple[float, float, float]

FILLS = ("solid", "linear", "radial", "stripes", "checker", "dots", "rings")


@dataclass(frozen=True, slots=True, kw_only=True)
class Paint:
    """Colours in ``[0, 1]``; ``period`` and widths in local units; ``angle`` in degrees."""

    fill: str
    first: RGB
    second: RGB
    period: float = 0.5
    angle: float = 0.0
    rim: RGB | None = None
    rim_width: float = 0.0
    marker: tuple[float, float, float] | None = None  # (u, v, radius)
    marker_colour: RGB = (1.0, 1.0, 1.0)

    def lifted(self) -> Paint:
        """The same paint with every colour at least 0.25 bright in each channel."""

        def lift(c: RGB) -> RGB:
            """``c`` mapped into ``[0.25, 1]`` per channel."""
            return (0.25 + 0.75 * c[0], 0.25 + 0.75 * c[1], 0.25 + 0.75 * c[2])

        return Paint(
            fill=self.fill,
            first=lift(self.first),
            second=lift(self.second),
            period=self.period,
            angle=self.angle,
            rim=None if self.rim is None else lift(self.rim),
            rim_width=self.rim_width,
            marker=self.marker,
            marker_colour=lift(self.marker_colour),
        )


def _edge(s: F32, pix: float) -> F32:
    """Anti-aliased step: 0 where ``s`` is well below 0, 1 well above (``s`` in local units)."""
    out: F32 = np.clip(np.float32(0.5) + s / np.float32(pix), 0, 1)
    return out


def mix_weight(paint: Paint, u: F32, v: F32, pix: float) -> F32:
    """Weight ``(same shape)`` of ``second`` against ``first`` for ``paint`` at ``u, v``."""
    a = math.radians(paint.angle)
    along = u * np.float32(math.cos(a)) + v * np.float32(math.sin(a))
    p = paint.period
    match paint.fill:
        case "solid":
            return np.zeros_like(u)
        case "linear":
            return _unit(np.float32(0.5) + along * np.float32(0.5))
        case "radial":
            return _unit(np.sqrt(u * u + v * v))
        case "stripes":
            return _stripes(along, p, pix)
        case "checker":
            across = v * np.float32(math.cos(a)) - u * np.float32(math.sin(a))
            sx, sy = _stripes(along, p, pix), _stripes(across, p, pix)
            return sx * sy + (1 - sx) * (1 - sy)
        case "dots":
            cu = np.mod(u + np.float32(p / 2), np.float32(p)) - np.float32(p / 2)
            cv = np.mod(v + np.float32(p / 2), np.float32(p)) - np.float32(p / 2)
            return _edge(np.float32(p * 0.3) - np.sqrt(cu * cu + cv * cv), pix)
        case "rings":
            return _stripes(np.sqrt(u * u + v * v), p, pix)
    raise ValueError(f"unknown fill {paint.fill!r}")


def _unit(t: F32) -> F32:
    """``t`` clipped to ``[0, 1]``, float32, same shape."""
    out: F32 = np.clip(t, 0, 1).astype(np.float32, copy=False)
    return out


def _stripes(t: F32, period: float, pix: float) -> F32:
    """1 on the first half of each ``period`` of ``t``, 0 on the second, anti-aliased."""
    half = np.float32(period / 2)
    phase = np.mod(t, np.float32(period))  # [0, period)
    # Signed distance to the nearest stripe edge, positive inside [0, half).
    s = np.minimum(phase, half - phase)
    s = np.where(phase < half, s, -np.minimum(phase - half, np.float32(period) - phase))
    return _edge(s.astype(np.float32), pix)


def colours(paint: Paint, u: F32, v: F32, d: F32, pix: float) -> F32:
    """RGB ``(..., 3)`` float32 of ``paint`` at local ``u, v`` with outline distance ``d``."""
    w = mix_weight(paint, u, v, pix)[..., None]
    first = np.asarray(paint.first, dtype=np.float32)
    second = np.asarray(paint.second, dtype=np.float32)
    rgb = first + (second - first) * w
    if paint.rim is not None and paint.rim_width > 0:
        band = _edge(d + np.float32(paint.rim_width), pix)[..., None]
        rgb = rgb + (np.asarray(paint.rim, dtype=np.float32) - rgb) * band
    if paint.marker is not None:
        mu, mv, mr = paint.marker
        dm = np.sqrt((u - np.float32(mu)) ** 2 + (v - np.float32(mv)) ** 2) - np.float32(mr)
        dot = _edge(-dm, pix)[..., None]
        rgb = rgb + (np.asarray(paint.marker_colour, dtype=np.float32) - rgb) * dot
    return rgb.astype(np.float32)


def luma(c: RGB) -> float:
    """Rec. 601 luma of an RGB colour in ``[0, 1]``."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def distance(a: RGB, b: RGB) -> float:
    """How far apart two colours look: Euclidean RGB distance plus the luma gap."""
    return math.dist(a, b) + abs(luma(a) - luma(b))


def nearby_colour(rng: np.random.Generator, base: RGB, spread: float) -> RGB:
    """``base`` moved by up to ``spread`` per channel (clipped to ``[0, 1]``)."""
    moved = np.clip(np.asarray(base) + rng.uniform(-spread, spread, 3), 0.0, 1.0)
    return (float(moved[0]), float(moved[1]), float(moved[2]))


def random_colour(rng: np.random.Generator) -> RGB:
    """A colour from a random hue, saturation and value (HSV), in ``[0, 1]``."""
    h, s, v = float(rng.random()), float(rng.uniform(0.2, 1.0)), float(rng.uniform(0.1, 1.0))
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def contrasting(
    rng: np.random.Generator, against: Sequence[RGB], *, min_distance: float = 0.55
) -> RGB:
    """A random colour at least ``min_distance`` from every colour of ``against``.

    The one farthest from the nearest of them after 24 tries when none is that far.
    """
    best, best_d = (1.0, 1.0, 1.0), -1.0
    for _ in range(24):
        c = random_colour(rng)
        d = min(distance(c, r) for r in against)
        if d >= min_distance:
            return c
        if d > best_d:
            best, best_d = c, d
    return best
