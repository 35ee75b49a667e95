"""Scene: every choice behind one held-out video, drawn from its seed.

The label picks an axis and a sign; a *mode* picks what carries the motion:
the object (``object``), the camera (``camera``: a pan or a zoom, so the
whole picture moves), both at once in the same direction (``both``), or, for
turns, an object spinning about a point off its centre (``pivot``). Nothing
else in the scene moves consistently: distractors stay put, or swing, wander,
spin, pulse and blink about where they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from model_export.data.heldout.actors import (
    DISTRACTOR_KINDS,
    Actor,
    Camera,
    sample_look,
    watermark_look,
)
from model_export.data.heldout.backdrop import Backdrop, sample_backdrop
from model_export.data.heldout.choreography import hero_motion
from model_export.data.heldout.encode import CODECS, pick_codec, sample_options
from model_export.data.heldout.labels import motion_of
from model_export.data.heldout.motion import F64, shake, swing, wander
from model_export.data.heldout.shapes import Shape

# Frame rates (fps) and their weights; the NTSC rates are exact fractions.
FRAME_RATES: tuple[tuple[Fraction, float], ...] = (
    (Fraction(10), 1.0),
    (Fraction(12), 1.0),
    (Fraction(25, 2), 1.0),
    (Fraction(15), 2.0),
    (Fraction(20), 1.0),
    (Fraction(24000, 1001), 2.0),
    (Fraction(24), 2.0),
    (Fraction(25), 2.0),
    (Fraction(30000, 1001), 3.0),
    (Fraction(30), 2.0),
    (Fraction(48), 0.5),
    (Fraction(50), 1.0),
    (Fraction(60000, 1001), 0.5),
    (Fraction(60), 1.0),
)
ASPECTS = ((4, 3), (16, 9), (3, 2), (1, 1), (5, 4), (2, 1), (3, 4), (9, 16))
LONG_SIDE = (96, 640)
TINY_LONG_SIDE = (72, 128)
SHORT_SIDE_MIN = 64
DURATION_S = (1.5, 7.0)
# Pixels x frames a clip may cost at most; longer or faster clips are cut down to it.
PIXEL_FRAMES_CAP = 640 * 360 * 75


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    """Whole-frame effects: ``gain (N,)``, a vignette, a colour ``tint``, sensor ``noise``
    (standard deviation in ``[0, 1]`` units) and letterbox bars (fraction of the short side)."""

    gain: F64
    vignette: float
    tint: tuple[float, float, float]
    noise: float
    bars: float
    bars_vertical: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Scene:
    """One video: label, format, backdrop, camera, hero, distractors, overlays, effects."""

    label: str
    seed: int
    codec: str
    options: tuple[tuple[str, str], ...]
    width: int
    height: int
    fps: Fraction
    frames: int
    mode: str
    easing: str
    backdrop: Backdrop
    camera: Camera
    hero: Actor
    extras: tuple[Actor, ...]
    overlays: tuple[Actor, ...]  # in screen px, the camera does not move them
    finish: Finish

    @property
    def duration_s(self) -> float:
        """Length in seconds: frames over the frame rate."""
        return float(self.frames / self.fps)

    def summary(self) -> dict[str, object]:
        """JSON-ready description for the manifest."""
        return {
            "mode": self.mode,
            "easing": self.easing,
            "shape": _shape_name(self.hero.look.shape),
            "fill": self.hero.look.paint.fill,
            "backdrop": self.backdrop.kind,
            "distractors": [a.behaviour for a in self.extras],
        }


def _shape_name(shape: Shape) -> str:
    """``kind`` of a shape: the letter of a glyph, ``<kind>+knob`` for a knobbed one."""
    if shape.kind == "knobbed":
        return f"{_shape_name(shape.parts[0][0])}+knob"
    return shape.glyph if shape.kind == "glyph" else shape.kind


def sample_format(
    rng: np.random.Generator, codec: str, *, tiny: bool = False
) -> tuple[int, int, Fraction, int]:
    """``(width, height, fps, frames)`` for ``codec``: a random aspect, size, rate and length.

    ``tiny``: at most 128 px on the long side and 16-30 frames (quick checks and tests).
    """
    spec = CODECS[codec]
    (lo_side, hi_side), short_min = (TINY_LONG_SIDE, 48) if tiny else (LONG_SIDE, SHORT_SIDE_MIN)
    aw, ah = ASPECTS[int(rng.integers(len(ASPECTS)))]
    lo = max(lo_side, math.ceil(short_min * max(aw, ah) / min(aw, ah)))
    long = round(math.exp(rng.uniform(math.log(lo), math.log(max(lo, hi_side)))))
    short = max(short_min, round(long * min(aw, ah) / max(aw, ah)))
    width, height = (long, short) if aw >= ah else (short, long)
    width, height = spec.fit_size(width, height)
    rates = [r for r, _ in FRAME_RATES if spec.allows_rate(r)]
    weights = np.array([w for r, w in FRAME_RATES if spec.allows_rate(r)])
    fps = rates[int(rng.choice(len(rates), p=weights / weights.sum()))]
    seconds = float(rng.uniform(*DURATION_S))
    cap_s = PIXEL_FRAMES_CAP / (width * height * float(fps))
    seconds = max(DURATION_S[0], min(seconds, cap_s))
    frames = max(16, round(seconds * float(fps)))
    if tiny:
        frames = min(frames, int(rng.integers(16, 31)))
    return width, height, fps, frames


def _finish(rng: np.random.Generator, n: int) -> Finish:
    """Random whole-frame effects for ``n`` frames (most of them off most of the time)."""
    flicker = shake(n, rng, float(rng.uniform(0.005, 0.02))) if rng.random() < 0.35 else 0.0
    tint = tuple(float(x) for x in rng.uniform(0.9, 1.1, 3)) if rng.random() < 0.3 else (1.0,) * 3
    return Finish(
        gain=np.ones(n) + flicker,
        vignette=float(rng.uniform(0.1, 0.45)) if rng.random() < 0.35 else 0.0,
        tint=(tint[0], tint[1], tint[2]),
        noise=float(rng.uniform(0.003, 0.015)) if rng.random() < 0.4 else 0.0,
        bars=float(rng.uniform(0.05, 0.12)) if rng.random() < 0.12 else 0.0,
        bars_vertical=bool(rng.random() < 0.3),
    )


def _extras(
    rng: np.random.Generator,
    *,
    hero: Actor,
    camera: Camera,
    width: int,
    height: int,
    label_px: float,
) -> tuple[Actor, ...]:
    """Distractors: smaller than the hero, each still or moving about its own place.

    ``label_px`` is how far the labelled motion carries the hero on screen; no
    distractor swings or wanders more than a third of it.
    """
    n = len(hero.radius)
    count = int(rng.integers(0, 3 + width * height // 40000))
    against = hero.look.paint.first
    # The world the camera sees at some point: distractors anywhere in it.
    half = np.array([width, height]) / 2 / camera.zoom[:, None]
    lo, hi = (camera.centre - half).min(axis=0), (camera.centre + half).max(axis=0)
    size = float(np.exp(np.mean(np.log(hero.radius))))
    m = min(width, height)
    out = []
    for _ in range(min(count, 7)):
        radius = size * float(rng.uniform(0.3, 0.6))
        if radius * float(camera.zoom.min()) < 2.5:
            continue
        look = sample_look(rng, against=[against], kinds=DISTRACTOR_KINDS, contrast=0.3)
        start = rng.uniform(lo, hi)
        centre = np.tile(start, (n, 1))
        radii = np.full(n, radius)
        angle = np.full(n, float(rng.uniform(0, 360)))
        opacity = np.ones(n)
        reach = min(0.06 * m, label_px / 3)
        behaviour = str(rng.choice(["still", "still", "swing", "wander", "spin", "pulse", "blink"]))
        match behaviour:
            case "swing":
                cycles = int(rng.integers(1, 4))
                # A swing strays up to twice its amplitude from where it starts.
                centre[:, 0] += swing(n, rng, reach * float(rng.uniform(0.15, 0.5)), cycles=cycles)
                centre[:, 1] += swing(n, rng, reach * float(rng.uniform(0.15, 0.5)), cycles=cycles)
            case "wander":
                centre[:, 0] += wander(n, rng, reach)
                centre[:, 1] += wander(n, rng, reach)
            case "spin":  # back and forth, never round
                angle += swing(n, rng, float(rng.uniform(8, 25)), cycles=int(rng.integers(2, 5)))
            case "pulse":
                radii *= 1 + swing(n, rng, float(rng.uniform(0.04, 0.1)), cycles=2)
            case "blink":
                period = max(2, int(n / rng.uniform(2, 6)))
                opacity = ((np.arange(n) // period) % 2 == 0).astype(np.float64)
        out.append(
            Actor(
                look=look,
                centre=centre,
                radius=radii,
                angle=angle,
                opacity=opacity,
                behaviour=behaviour,
            )
        )
    return tuple(out)


def _overlays(rng: np.random.Generator, n: int, width: int, height: int) -> tuple[Actor, ...]:
    """A quarter of the time, a faint static watermark in a corner (screen px)."""
    if rng.random() >= 0.25:
        return ()
    m = min(width, height)
    radius = max(3.0, m * float(rng.uniform(0.04, 0.08)))
    x = radius * 1.6 if rng.random() < 0.5 else width - radius * 1.6
    y = radius * 1.6 if rng.random() < 0.5 else height - radius * 1.6
    return (
        Actor(
            look=watermark_look(rng),
            centre=np.tile([x, y], (n, 1)).astype(np.float64),
            radius=np.full(n, radius),
            angle=np.zeros(n),
            opacity=np.full(n, float(rng.uniform(0.3, 0.7))),
            behaviour="watermark",
        ),
    )


def sample_scene(
    label: str,
    seed: int,
    *,
    tiny: bool = False,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
) -> Scene:
    """The scene of ``label`` for ``seed``.

    ``tiny`` draws a small, short format (see :func:`sample_format`); ``mode``,
    ``size`` and ``frames`` pin those choices (tests measure motion with them).
    """
    axis, sign = motion_of(label)
    rng = np.random.default_rng([seed, 0x4E1D])
    codec = pick_codec(rng)
    width, height, rate, n = sample_format(rng, codec, tiny=tiny)
    if size is not None:
        width, height = CODECS[codec].fit_size(*size)
    n = n if frames is None else frames
    options = sample_options(codec, rng, width=width, height=height, fps=rate)
    backdrop = sample_backdrop(rng, short_side=min(width, height))
    hero_look = sample_look(rng, against=backdrop.palette, rim_chance=0.5)
    moved = hero_motion(
        rng, axis=axis, sign=sign, look=hero_look, width=width, height=height, n=n, mode=mode
    )
    extras = _extras(
        rng,
        hero=moved.hero,
        camera=moved.camera,
        width=width,
        height=height,
        label_px=moved.label_px,
    )
    return Scene(
        label=label,
        seed=seed,
        codec=codec,
        options=options,
        width=width,
        height=height,
        fps=rate,
        frames=n,
        mode=moved.mode,
        easing=moved.easing,
        backdrop=backdrop,
        camera=moved.camera,
        hero=moved.hero,
        extras=extras,
        overlays=_overlays(rng, n, width, height),
        finish=_finish(rng, n),
    )
