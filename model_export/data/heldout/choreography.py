"""Choreography: how the object of interest and the camera carry the labelled motion.

World coordinates equal screen coordinates while the camera is at rest
(centre ``(W/2, H/2)``, zoom 1). Each axis has its modes:

- ``x`` / ``y``: ``object`` (it travels, the camera holds), ``camera`` (the camera
  pans the other way, so the whole picture travels), ``both`` (each carries a
  share, in the same direction on screen);
- ``zoom``: ``object`` (it grows or shrinks in place) or ``camera`` (the camera
  zooms about a point on the object, so everything grows or shrinks);
- ``turn``: ``object`` (it spins about its centre) or ``pivot`` (about a point
  off its centre, like a clock hand).

In every mode the object stays in frame but for at most a fifth of its radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model_export.data.heldout.actors import Actor, Camera, Look, still, turn_legible
from model_export.data.heldout.labels import Axis
from model_export.data.heldout.motion import F64, progress, shake, swing, wander

SAMPLES = 16  # frames a classifier takes from a clip
MAX_TURN_STEP = 30.0  # degrees

MODES: dict[Axis, tuple[str, ...]] = {
    "x": ("object", "object", "camera", "both"),
    "y": ("object", "object", "camera", "both"),
    "zoom": ("object", "object", "camera"),
    "turn": ("object", "object", "object", "pivot"),
}


def _peak_step(p: F64, samples: int = SAMPLES) -> float:
    """The largest change of progress ``p (n,)`` between the frames at the centres of
    ``samples`` equal segments (how a classifier samples a clip)."""
    n = len(p)
    idx = np.minimum(n - 1, ((np.arange(samples) + 0.5) * n / samples).astype(int))
    steps = np.abs(np.diff(p[idx]))
    return max(float(steps.max()) if len(steps) else 0.0, 1e-6)


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved:
    """The hero and the camera over the clip; ``label_px``: how far the labelled motion
    carries the hero on screen (travel, growth of its radius, or arc of its rim)."""

    hero: Actor
    camera: Camera
    mode: str
    easing: str
    label_px: float


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """``U(lo, hi)``, or the middle when the range is empty."""
    return float(rng.uniform(lo, hi)) if hi > lo else (lo + hi) / 2


def _handheld(rng: np.random.Generator, n: int, width: int, height: int, *, always: bool) -> Camera:
    """A still camera, or (always when ``always``, else 30%) one that shakes a little."""
    camera = still(n, width, height)
    if always or rng.random() < 0.3:
        sigma = min(width, height) * float(rng.uniform(0.002, 0.008))
        jitter = np.stack([shake(n, rng, sigma), shake(n, rng, sigma)], axis=1)
        return Camera(camera.centre + jitter, camera.zoom)
    return camera


def _hero(look: Look, centre: F64, radius: F64, angle: F64) -> Actor:
    """The hero: always fully opaque."""
    return Actor(
        look=look,
        centre=centre,
        radius=radius,
        angle=angle,
        opacity=np.ones(len(radius)),
        behaviour="hero",
    )


def _wobble(rng: np.random.Generator, n: int, degrees: float) -> F64:
    """Angle ``(n,)``: a random heading, half the time swinging up to ``degrees``."""
    base = np.full(n, float(rng.uniform(0, 360)))
    if rng.random() < 0.5:
        base += swing(n, rng, float(rng.uniform(0, degrees)), cycles=int(rng.integers(1, 3)))
    return base


def _breathe(rng: np.random.Generator, radius: F64) -> F64:
    """``radius (n,)``, 30% of the time breathing by up to 4% (whole periods)."""
    if rng.random() < 0.3:
        out: F64 = radius * (1 + swing(len(radius), rng, float(rng.uniform(0.01, 0.04)), cycles=2))
        return out
    return radius


def hero_motion(
    rng: np.random.Generator,
    *,
    axis: Axis,
    sign: int,
    look: Look,
    width: int,
    height: int,
    n: int,
    mode: str | None = None,
) -> Moved:
    """The hero and camera for a label's ``axis`` and ``sign`` (random ``mode`` unless given)."""
    if mode is None:
        mode = str(rng.choice(MODES[axis]))
    elif mode not in MODES[axis]:
        raise ValueError(f"mode {mode!r} does not carry axis {axis!r}; one of {MODES[axis]}")
    p, easing = progress(n, rng)
    size = (width, height)
    if axis in ("x", "y"):
        k = 0 if axis == "x" else 1
        return _move(rng, p, k=k, sign=sign, look=look, size=size, mode=mode, easing=easing)
    if axis == "zoom":
        return _zoom(rng, p, sign=sign, look=look, size=size, mode=mode, easing=easing)
    return _turn(rng, p, sign=sign, look=look, size=size, mode=mode, easing=easing)


def _move(
    rng: np.random.Generator,
    p: F64,
    *,
    k: int,
    sign: int,
    look: Look,
    size: tuple[int, int],
    mode: str,
    easing: str,
) -> Moved:
    """Travel along screen axis ``k`` (0: x, 1: y) in direction ``sign``."""
    n = len(p)
    length, across = size[k], size[1 - k]
    m = min(size)
    r = min(m * float(rng.uniform(0.09, 0.2)), 0.2 * length)
    travel = min(length * float(rng.uniform(0.35, 0.7)), length - 1.6 * r)
    start = _uniform(rng, 0.8 * r, length - 0.8 * r - travel)
    if sign < 0:
        start = length - start
    side = np.full(n, _uniform(rng, r, across - r))
    side += float(rng.uniform(-0.1, 0.1)) * travel * p  # a slight slant, never the main axis
    side = np.clip(side, 0.8 * r, across - 0.8 * r)
    share = float(rng.uniform(0.3, 0.7)) if mode == "both" else (1.0 if mode == "camera" else 0.0)
    p_cam = progress(n, rng)[0] if mode == "both" else p
    camera = _handheld(rng, n, *size, always=mode != "object")
    centre = np.empty((n, 2))
    centre[:, k] = start + sign * travel * (1 - share) * p
    centre[:, 1 - k] = side
    camera.centre[:, k] -= sign * travel * share * p_cam
    hero = Actor(
        look=look,
        centre=centre,
        radius=_breathe(rng, np.full(n, r)),
        angle=_wobble(rng, n, 10.0),
        opacity=np.ones(n),
        behaviour="hero",
    )
    return Moved(hero=hero, camera=camera, mode=mode, easing=easing, label_px=travel)


def _zoom(
    rng: np.random.Generator,
    p: F64,
    *,
    sign: int,
    look: Look,
    size: tuple[int, int],
    mode: str,
    easing: str,
) -> Moved:
    """Growth (``sign`` 1) or shrinking (-1) on screen, by the object or the camera."""
    n = len(p)
    width, height = size
    m = min(size)
    angle = _wobble(rng, n, 8.0)
    grow = p if sign > 0 else 1 - p
    if mode == "object":
        big = m * float(rng.uniform(0.28, 0.42))
        small = max(big / float(rng.uniform(1.7, 3.0)), 3.5)
        radius = small * (big / small) ** grow
        centre = np.empty((n, 2))
        for j, extent in enumerate(size):
            centre[:, j] = _uniform(rng, 0.85 * big, extent - 0.85 * big)
            centre[:, j] += wander(n, rng, 0.03 * m)
            centre[:, j] = np.clip(centre[:, j], 0.8 * big, extent - 0.8 * big)
        hero = _hero(look, centre, radius, angle)
        camera = _handheld(rng, n, width, height, always=False)
        return Moved(hero=hero, camera=camera, mode=mode, easing=easing, label_px=big - small)
    ratio = float(rng.uniform(1.5, 2.6))
    r = _uniform(rng, max(0.07 * m, 3.5), 0.4 * m / ratio)
    zoom = ratio**grow
    offset = rng.uniform(-0.25, 0.25, 2) * r if rng.random() < 0.5 else np.zeros(2)
    focus = np.empty(2)
    for j, extent in enumerate(size):
        reach = 0.85 * r * ratio + ratio * abs(float(offset[j]))
        focus[j] = _uniform(rng, reach, extent - reach)
    half = np.array([width / 2, height / 2])
    # The focus stays put on screen: centre(t) = f - (f - half) / zoom(t).
    centre = focus - (focus - half) / zoom[:, None]
    jitter = _handheld(rng, n, width, height, always=True).centre - half
    camera = Camera(centre + jitter / zoom[:, None], zoom)
    hero_centre = np.tile(focus + offset, (n, 1))
    hero = _hero(look, hero_centre, np.full(n, r), angle)
    return Moved(hero=hero, camera=camera, mode=mode, easing=easing, label_px=r * (ratio - 1))


def _turn(
    rng: np.random.Generator,
    p: F64,
    *,
    sign: int,
    look: Look,
    size: tuple[int, int],
    mode: str,
    easing: str,
) -> Moved:
    """A turn clockwise (``sign`` 1) or counter-clockwise (-1) on screen."""
    n = len(p)
    m = min(size)
    look = turn_legible(look, rng)
    # No more than MAX_TURN_STEP degrees between any two of the frames a classifier
    # samples, so the turn never reads as a shorter one the other way round.
    sweep = min(float(rng.uniform(90, 300)), MAX_TURN_STEP / _peak_step(p))
    angle = float(rng.uniform(0, 360)) + sign * sweep * p
    r = m * float(rng.uniform(0.15, 0.4) if mode == "object" else rng.uniform(0.12, 0.25))
    arm = r * float(rng.uniform(0.3, 0.7)) if mode == "pivot" else 0.0
    centre = np.empty((n, 2))
    for j, extent in enumerate(size):
        reach = arm + 0.85 * r
        centre[:, j] = _uniform(rng, reach, extent - reach)
        if mode == "object":
            centre[:, j] += wander(n, rng, 0.03 * m)
        centre[:, j] = np.clip(centre[:, j], 0.8 * r + arm, extent - 0.8 * r - arm)
    if mode == "pivot":
        heading = float(rng.uniform(0, 2 * math.pi)) + np.radians(angle)
        centre += arm * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    hero = _hero(look, centre, _breathe(rng, np.full(n, r)), angle)
    camera = _handheld(rng, n, *size, always=False)
    return Moved(
        hero=hero, camera=camera, mode=mode, easing=easing, label_px=r * math.radians(sweep)
    )
