"""Track: the per-frame state of a clip (object pose, camera, flicker, noise).

Each axis draws its trajectory in a canonical direction (content goes right, goes
down, grows, turns clockwise); the opposite label plays the whole track backwards.
Everything else that varies per frame is a time-reversible process (independent
draws, or a stationary AR(1)), so nothing but the trajectory's order says which
label a clip has.

On screen (image axes, y down), world point ``q`` appears at
``c + view * R(turn) (q - c) - pan - shake``, where ``c`` is the scene's view centre
and ``R`` turns clockwise on screen for positive degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Motion kinds per axis, with the chance of the whole-view variant.
VIEW_MOTIONS = {
    "move": ("pan", 0.3),
    "zoom_object": ("zoom_view", 0.35),
    "rotate": ("rotate_view", 0.25),
}


@dataclass(frozen=True, slots=True, eq=False)
class Track:
    """Per-frame state: arrays ``(N,)`` float64 (``jitter`` is ``(N, D, 2)``).

    ``x, y`` main object centre in world px; ``scale`` times the scene's object size;
    ``angle`` degrees clockwise; camera: ``view`` zoom and ``turn`` degrees about the
    view centre, ``pan_*`` and ``shake_*`` offsets in screen px; ``gain`` brightness
    factor; ``noise_*`` offsets into the noise bank; ``jitter`` distractor offsets px.
    """

    x: FloatArray
    y: FloatArray
    scale: FloatArray
    angle: FloatArray
    view: FloatArray
    turn: FloatArray
    pan_x: FloatArray
    pan_y: FloatArray
    shake_x: FloatArray
    shake_y: FloatArray
    gain: FloatArray
    noise_x: FloatArray
    noise_y: FloatArray
    jitter: FloatArray

    def reversed(self) -> Track:
        """The same state played backwards."""
        return Track(*(getattr(self, f.name)[::-1].copy() for f in fields(self)))

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True, slots=True, eq=False)
class Motion:
    """The main trajectory of a clip (canonical direction); arrays ``(N,)`` float64."""

    kind: str  # move, pan, zoom_object, zoom_view, rotate, rotate_view
    size: float  # object diameter px at scale 1, view 1
    view_centre: tuple[float, float]
    x: FloatArray
    y: FloatArray
    scale: FloatArray
    angle: FloatArray
    view: FloatArray
    turn: FloatArray
    pan_x: FloatArray
    pan_y: FloatArray


def on_screen(
    track: Track, *, centre: tuple[float, float], size: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The main object on screen: centre ``(N, 2)`` px, radius ``(N,)`` px, angle ``(N,)``.

    ``centre`` is the scene's view centre and ``size`` its object diameter.
    """
    t = track
    cx, cy = centre
    c, s = np.cos(np.radians(t.turn)), np.sin(np.radians(t.turn))
    dx, dy = t.x - cx, t.y - cy
    x = cx + t.view * (c * dx - s * dy) - t.pan_x - t.shake_x
    y = cy + t.view * (s * dx + c * dy) - t.pan_y - t.shake_y
    return np.stack([x, y], axis=1), size / 2 * t.scale * t.view, t.angle + t.turn


def profile(rng: np.random.Generator, n: int) -> FloatArray:
    """Progress ``(N,)`` from 0 to 1: optional holds, then linear or eased motion.

    Ease-in and ease-out are equally likely, so reversal maps the set onto itself.
    """
    t = np.linspace(0.0, 1.0, n)
    hold0 = rng.uniform(0, 0.15) if rng.random() < 0.4 else 0.0
    hold1 = rng.uniform(0, 0.15) if rng.random() < 0.4 else 0.0
    tau = np.clip((t - hold0) / (1.0 - hold0 - hold1), 0.0, 1.0)
    power = rng.uniform(1.3, 2.2)
    kind = int(rng.integers(4))
    if kind == 1:
        return tau * tau * (3 - 2 * tau)
    if kind == 2:
        return np.asarray(tau**power, np.float64)
    if kind == 3:
        return np.asarray(1 - (1 - tau) ** power, np.float64)
    return tau


def _lerp(a: float, b: float, u: FloatArray) -> FloatArray:
    return a + (b - a) * u


def _span(rng: np.random.Generator, lo: float, hi: float, length: int) -> tuple[float, float]:
    """A start in ``[lo, hi] * length`` and an end that drifts at most 5% of ``length``."""
    start = rng.uniform(lo, hi) * length
    return float(start), float(start + rng.uniform(-0.05, 0.05) * length)


def sample_motion(
    rng: np.random.Generator, axis: str, *, width: int, height: int, n: int
) -> Motion:
    """The canonical trajectory of ``axis`` (move_x, move_y, zoom, rotate) for ``n`` frames."""
    short = min(width, height)
    base = {"move_x": "move", "move_y": "move", "zoom": "zoom_object", "rotate": "rotate"}[axis]
    whole_view, chance = VIEW_MOTIONS[base]
    kind = whole_view if rng.random() < chance else base
    u = profile(rng, n)
    ones, zeros = np.ones(n), np.zeros(n)
    centre = (width / 2, height / 2)
    view, turn, pan_x, pan_y = ones, zeros, zeros, zeros
    if base == "move":
        size = short * rng.uniform(0.12, 0.45)
        along, across = (width, height) if axis == "move_x" else (height, width)
        margin = 0.2 * size  # the centre may come this close to the edge
        travel = min(along * rng.uniform(0.25, 0.70), along - 2 * margin)
        start = rng.uniform(margin, along - margin - travel)
        side_margin = min(0.55 * size, across / 2)
        side0 = rng.uniform(side_margin, across - side_margin)
        side1 = np.clip(
            side0 + across * rng.uniform(-0.08, 0.08), side_margin, across - side_margin
        )
        main, cross = _lerp(start, start + travel, u), _lerp(side0, float(side1), u)
        x, y = (main, cross) if axis == "move_x" else (cross, main)
        scale = np.exp(rng.uniform(-0.12, 0.12) * u)
        a0 = rng.uniform(0, 360)
        angle = _lerp(a0, a0 + rng.uniform(-20, 20), u)
        if kind == "pan":  # same path on screen, but the camera moves, not the object
            pan_x, pan_y = x[0] - x, y[0] - y
            x, y, scale, angle = ones * x[0], ones * y[0], ones, ones * a0
    elif base == "rotate":
        size = short * rng.uniform(0.18, 0.45)
        a0 = rng.uniform(0, 360)
        spin = _lerp(0.0, rng.uniform(45, 200), u)
        x = _lerp(*_span(rng, 0.35, 0.65, width), u)
        y = _lerp(*_span(rng, 0.35, 0.65, height), u)
        scale = np.exp(rng.uniform(-0.1, 0.1) * u)
        angle = a0 + spin
        if kind == "rotate_view":  # the camera turns about a point near the object
            off = rng.uniform(-0.08, 0.08, 2) * short
            centre = (float(x[0] + off[0]), float(y[0] + off[1]))
            x, y, scale, angle, turn = ones * x[0], ones * y[0], ones, ones * a0, spin
    else:
        ratio = rng.uniform(1.6, 3.5)
        size = short * rng.uniform(0.12, max(0.12, 0.5 / ratio))
        a0 = rng.uniform(0, 360)
        x = _lerp(*_span(rng, 0.3, 0.7, width), u)
        y = _lerp(*_span(rng, 0.3, 0.7, height), u)
        scale = ratio**u
        angle = _lerp(a0, a0 + rng.uniform(-15, 15), u)
        if kind == "zoom_view":
            cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
            centre = (cx, cy)
            # Place the object so that it ends (fully zoomed) where x, y end on screen.
            x = ones * (cx + (x[-1] - cx) / ratio)
            y = ones * (cy + (y[-1] - cy) / ratio)
            scale, angle, view = ones, ones * a0, ratio**u
    return Motion(kind, float(size), centre, x, y, scale, angle, view, turn, pan_x, pan_y)


def shake(
    rng: np.random.Generator, n: int, short: int, *, whole: bool
) -> tuple[FloatArray, FloatArray]:
    """Stationary AR(1) camera offsets ``(N,)`` x2 (reversible); rounded unless ``whole``."""
    if rng.random() < 0.35:
        return np.zeros(n), np.zeros(n)
    sigma = short * rng.uniform(0.002, 0.01)
    rho = rng.uniform(0.4, 0.95)
    noise = rng.normal(size=(n, 2))
    out = np.empty((n, 2))
    out[0] = noise[0] * sigma
    for i in range(1, n):
        out[i] = rho * out[i - 1] + np.sqrt(1 - rho * rho) * sigma * noise[i]
    if not whole:
        out = np.round(out)
    return out[:, 0].copy(), out[:, 1].copy()


def flicker(rng: np.random.Generator, n: int) -> FloatArray:
    """Brightness gain per frame ``(N,)``: mostly 1, sometimes independent wobble and spikes."""
    if rng.random() >= 0.25:
        return np.ones(n)
    wobble = 1.0 + rng.uniform(0.01, 0.05) * np.clip(rng.normal(size=n), -2, 2)
    spikes = rng.random(n) < rng.uniform(0.02, 0.12)
    return np.asarray(wobble * np.where(spikes, rng.uniform(0.8, 1.25, n), 1.0), np.float64)
