"""Motion: per-frame curves for the labelled motion and for everything that is not it.

``progress`` is how far the labelled motion has got (0 -> 1, never backwards:
easing, speed changes, holds, a pause). The rest returns to where it started,
so it cannot read as a motion of its own: ``shake`` (small smooth jitter),
``swing`` (whole periods of a sine) and ``wander`` (a smoothed random walk tied
down at both ends). All return ``(n,)`` float64.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

EASINGS = ("linear", "smooth", "ease_in", "ease_out", "two_speed", "pause")


def _timeline(n: int) -> F64:
    """Normalised time ``(n,)`` from 0 to 1."""
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(n)


def ease(s: F64, kind: str, *, power: float = 2.0, knot: float = 0.5, share: float = 0.5) -> F64:
    """Eased progress ``(n,)`` for ``s`` in ``[0, 1]``; monotone, 0 at 0 and 1 at 1.

    ``power`` shapes ease-in/out; ``knot`` and ``share``: a ``two_speed`` curve reaches
    ``share`` of the way at ``knot`` of the time; a ``pause`` holds ``share`` from
    ``knot`` for a fifth of the time.
    """
    s = np.clip(s, 0.0, 1.0)
    match kind:
        case "linear":
            return s
        case "smooth":
            out: F64 = s * s * (3 - 2 * s)
            return out
        case "ease_in":
            return np.asarray(s**power, dtype=np.float64)
        case "ease_out":
            return np.asarray(1 - (1 - s) ** power, dtype=np.float64)
        case "two_speed":
            return np.interp(s, [0.0, knot, 1.0], [0.0, share, 1.0])
        case "pause":
            end = min(knot + 0.2, 0.95)
            return np.interp(s, [0.0, knot, end, 1.0], [0.0, share, share, 1.0])
    raise ValueError(f"unknown easing {kind!r}")


def progress(n: int, rng: np.random.Generator) -> tuple[F64, str]:
    """A random progress curve over ``n`` frames and its easing's name.

    Optional holds at the start and the end (each at most 15% of the clip).
    """
    kind = EASINGS[int(rng.integers(len(EASINGS)))]
    hold_in = float(rng.uniform(0.0, 0.15)) if rng.random() < 0.35 else 0.0
    hold_out = float(rng.uniform(0.0, 0.15)) if rng.random() < 0.35 else 0.0
    knot = float(rng.uniform(0.3, 0.7))
    share = float(np.clip(knot * rng.uniform(0.45, 1.8), 0.15, 0.85))
    t = _timeline(n)
    s = (t - hold_in) / (1.0 - hold_in - hold_out)
    curve = ease(s, kind, power=float(rng.uniform(1.4, 2.4)), knot=knot, share=share)
    return curve, kind


def shake(n: int, rng: np.random.Generator, sigma: float) -> F64:
    """Smooth jitter ``(n,)``: a stationary AR(1) process with standard deviation ``sigma``."""
    if sigma <= 0 or n == 0:
        return np.zeros(n)
    rho = float(rng.uniform(0.6, 0.9))
    noise = rng.normal(0.0, 1.0, n)
    out = np.empty(n)
    out[0] = noise[0]
    scale = math.sqrt(1 - rho * rho)
    for i in range(1, n):
        out[i] = rho * out[i - 1] + scale * noise[i]
    return out * sigma


def swing(n: int, rng: np.random.Generator, amplitude: float, *, cycles: int = 1) -> F64:
    """``amplitude * sin`` over whole ``cycles`` from a random phase, minus its start value.

    Starts and ends at 0, so the swing adds no net displacement; it strays up to
    ``2 * amplitude`` from 0.
    """
    phase = float(rng.uniform(0, 2 * math.pi))
    curve = amplitude * np.sin(2 * math.pi * cycles * _timeline(n) + phase)
    out: F64 = curve - (curve[0] if n else 0.0)
    return out


def wander(n: int, rng: np.random.Generator, amplitude: float) -> F64:
    """A smoothed random walk pinned to 0 at both ends, at most ``amplitude`` away from 0."""
    if n < 3 or amplitude <= 0:
        return np.zeros(n)
    walk = np.cumsum(rng.normal(0.0, 1.0, n))
    kernel = np.hanning(max(3, n // 6))
    walk = np.convolve(walk, kernel / kernel.sum(), mode="same")
    walk -= np.linspace(walk[0], walk[-1], n)  # the bridge: 0 at both ends
    peak = float(np.max(np.abs(walk)))
    return walk * (amplitude / peak) if peak > 0 else walk
