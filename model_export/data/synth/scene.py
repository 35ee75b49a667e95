"""Scene: every random parameter of one labelled video, drawn from a seed.

The label only picks an axis and a direction. A scene draws the axis's trajectory in
its canonical direction (right, down, zoom in, clockwise) together with everything
else that varies per frame (shake, flicker, noise offsets, distractor jitter); the
opposite label reverses that whole per-frame state in time. So ``move_left`` videos
are exactly time-reversed ``move_right`` videos in distribution, with the same
frames in the opposite order: only temporal order tells a pair apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from model_export.data.synth.encode import CODECS, Encoding, sample_encoding
from model_export.data.synth.shape import SYMMETRIC
from model_export.data.synth.sprite import SpriteSpec
from model_export.data.synth.style import Style, get_style
from model_export.data.synth.texture import RGB
from model_export.data.synth.track import VIEW_MOTIONS, Track, flicker, on_screen, sample_motion, shake

FloatArray = npt.NDArray[np.float64]

LABELS: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
)
# label -> (axis, reversed); the canonical direction of each axis is the unreversed one.
AXES: dict[str, tuple[str, bool]] = {
    "move_left": ("move_x", True),
    "move_right": ("move_x", False),
    "move_up": ("move_y", True),
    "move_down": ("move_y", False),
    "zoom_in": ("zoom", False),
    "zoom_out": ("zoom", True),
    "rotate_cw": ("rotate", False),
    "rotate_ccw": ("rotate", True),
}
_AXIS_IDS = {"move_x": 0, "move_y": 1, "zoom": 2, "rotate": 3}
VIEW_KINDS = frozenset(kind for kind, _ in VIEW_MOTIONS.values())
NOISE_PAD = 32  # the noise bank is this many px larger than a frame on each axis


@dataclass(frozen=True, slots=True)
class Distractor:
    """A secondary object: static, or jittering symmetrically about its place."""

    sprite: SpriteSpec
    size: float  # diameter px
    x: float
    y: float
    angle: float
    jitter: float  # std of the per-frame offset in px; 0 = static


@dataclass(frozen=True, slots=True, eq=False)
class Scene:
    """Everything needed to render and encode one video."""

    label: str
    motion: str  # move, pan, zoom_object, zoom_view, rotate or rotate_view
    width: int
    height: int
    fps: int
    encoding: Encoding
    background: str
    background_colours: tuple[RGB, RGB]
    background_seed: int
    sprite: SpriteSpec
    size: float  # diameter px of the main object at scale 1, view 1
    view_centre: tuple[float, float]
    distractors: tuple[Distractor, ...]
    noise_sigma: float
    noise_seed: int
    track: Track

    @property
    def num_frames(self) -> int:
        return len(self.track)

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def summary(self) -> dict[str, Any]:
        """JSON-ready parameters for the manifest; ``start``/``end``: the object on screen."""
        t = self.track
        centre, radius, angle = on_screen(t, centre=self.view_centre, size=self.size)
        return {
            "label": self.label,
            "motion": self.motion,
            "codec": self.encoding.spec.encoder,
            "container": self.encoding.spec.muxer,
            "format": self.encoding.codec,
            "pix_fmt": self.encoding.spec.pix_fmt,
            "quality": self.encoding.quality,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "duration": round(self.duration, 4),
            "shape": self.sprite.shape,
            "texture": self.sprite.texture,
            "marker": self.sprite.marker is not None,
            "background": self.background,
            "distractors": [d.sprite.shape for d in self.distractors],
            "size": round(self.size, 2),
            "start": _pose(centre[0], float(radius[0]), float(angle[0])),
            "end": _pose(centre[-1], float(radius[-1]), float(angle[-1])),
            "noise_sigma": round(self.noise_sigma, 3),
            "shake": bool(np.any(t.shake_x != 0) or np.any(t.shake_y != 0)),
            "flicker": bool(np.any(t.gain != 1.0)),
        }


def _pose(centre: FloatArray, radius: float, angle: float) -> dict[str, float]:
    return {
        "x": round(float(centre[0]), 2),
        "y": round(float(centre[1]), 2),
        "radius": round(radius, 2),
        "angle": round(angle, 2),
    }


def _colour(rng: np.random.Generator) -> RGB:
    r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
    return r, g, b


def _clip_colour(values: npt.NDArray[np.float64]) -> RGB:
    r, g, b = (int(v) for v in np.clip(np.round(values), 0, 255))
    return r, g, b


def _away_from(refs: FloatArray, rng: np.random.Generator, dist: float) -> RGB:
    """A random colour at least ``dist`` from every row of ``refs`` ``(K, 3)``.

    The farthest of a few tries when none is that far.
    """
    tries = rng.integers(0, 256, size=(16, 3)).astype(np.float64)
    gaps = np.linalg.norm(tries[:, None, :] - refs[None, :, :], axis=2).min(axis=1)
    ok = np.flatnonzero(gaps >= dist)
    return _clip_colour(tries[ok[0]] if len(ok) else tries[int(np.argmax(gaps))])


def _object_colours(rng: np.random.Generator, backdrop: FloatArray) -> tuple[RGB, RGB]:
    """Two colours of an object on a background of colours ``backdrop`` ``(2, 3)``."""
    if rng.random() < 0.15:  # low contrast: near one of the background's colours
        direction = rng.normal(size=3)
        offset = direction / np.linalg.norm(direction) * rng.uniform(40, 70)
        first = _clip_colour(backdrop[int(rng.integers(2))] + offset)
    else:
        first = _away_from(backdrop, rng, 100.0)
    second = _colour(rng) if rng.random() < 0.4 else _clip_colour(first + rng.normal(0, 45, 3))
    return first, second


def _sprite_spec(
    rng: np.random.Generator, style: Style, backdrop: FloatArray, *, marker: float, turns: bool
) -> SpriteSpec:
    """A random object; it carries a marker with probability ``marker``, and always
    when it ``turns`` with a silhouette that could hide the turn."""
    shape = style.shapes[int(rng.integers(len(style.shapes)))]
    fill = style.textures[int(rng.integers(len(style.textures)))]
    colours = _object_colours(rng, backdrop)
    marker_colour = _away_from(np.asarray(colours, np.float64), rng, 120.0)
    has_marker = rng.random() < marker or (turns and shape in SYMMETRIC)
    seed = int(rng.integers(2**31))
    return SpriteSpec(shape, fill, colours, marker_colour if has_marker else None, seed)


def _dimensions(rng: np.random.Generator, style: Style) -> tuple[int, int]:
    """Even (width, height): the longer side log-uniform in a style range (small favoured)."""
    spans = np.array([hi - lo + 1 for lo, hi in style.long_sides], np.float64)
    lo, hi = style.long_sides[int(rng.choice(len(spans), p=spans / spans.sum()))]
    long_side = 2 * round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) / 2)  # even
    aw, ah = style.aspects[int(rng.integers(len(style.aspects)))]
    short_side = max(32, 2 * round(long_side * min(aw, ah) / max(aw, ah) / 2))
    return (long_side, short_side) if aw >= ah else (short_side, long_side)


def sample_scene(seed: int, label: str, style: str | Style = "default") -> Scene:
    """The scene of ``label`` for ``seed``; paired labels share all draws, time reversed."""
    if label not in AXES:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}")
    style = get_style(style) if isinstance(style, str) else style
    axis, backwards = AXES[label]
    rng = np.random.default_rng([seed, _AXIS_IDS[axis]])

    keys = [k for k, _ in style.codecs]
    weights = np.array([w for _, w in style.codecs])
    codec = keys[int(rng.choice(len(keys), p=weights / weights.sum()))]
    encoding = sample_encoding(codec, rng)
    width, height = _dimensions(rng, style)
    rates = CODECS[codec].rates or tuple(range(12, 31))
    fps = int(rates[int(rng.integers(len(rates)))])
    duration = float(np.exp(rng.uniform(np.log(1.5), np.log(6.0))))  # favours short clips
    n = max(8, round(duration * fps))
    short = min(width, height)

    background_kind = style.backgrounds[int(rng.integers(len(style.backgrounds)))]
    bg1 = _colour(rng)
    bg2 = _colour(rng) if rng.random() < 0.3 else _clip_colour(np.add(bg1, rng.normal(0, 60, 3)))
    backdrop = np.asarray([bg1, bg2], np.float64)
    background_seed = int(rng.integers(2**31))

    motion = sample_motion(rng, axis, width=width, height=height, n=n)
    turns = motion.kind.startswith("rotate")
    spec = _sprite_spec(rng, style, backdrop, marker=0.5 if turns else 0.35, turns=turns)
    view_motion = motion.kind in VIEW_KINDS
    shake_x, shake_y = shake(rng, n, short, whole=view_motion)
    gain = flicker(rng, n)
    noise_sigma = 0.0 if rng.random() < 0.2 else rng.uniform(1.0, 8.0)
    noise_seed = int(rng.integers(2**31))
    noise_x = rng.integers(0, NOISE_PAD, n).astype(np.float64)
    noise_y = rng.integers(0, NOISE_PAD, n).astype(np.float64)

    # Distractors anywhere the camera will look (a pan sees more than one frame).
    x_lo, x_hi = float(motion.pan_x.min()), width + float(motion.pan_x.max())
    y_lo, y_hi = float(motion.pan_y.min()), height + float(motion.pan_y.max())
    distractors = []
    for _ in range(int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))):
        d_spec = _sprite_spec(rng, style, backdrop, marker=0.3, turns=False)
        jitter = 0.0 if view_motion or rng.random() < 0.5 else rng.uniform(0.4, 2.0)
        distractors.append(
            Distractor(
                sprite=d_spec,
                size=short * rng.uniform(0.08, 0.25),
                x=rng.uniform(x_lo, x_hi),
                y=rng.uniform(y_lo, y_hi),
                angle=rng.uniform(0, 360),
                jitter=jitter,
            )
        )
    jitter_std = np.array([d.jitter for d in distractors])
    jitter = rng.normal(size=(n, len(distractors), 2)) * jitter_std[None, :, None]

    m = motion
    track = Track(
        *(m.x, m.y, m.scale, m.angle, m.view, m.turn, m.pan_x, m.pan_y),
        *(shake_x, shake_y, gain, noise_x, noise_y, jitter),
    )
    if backwards:
        track = track.reversed()
    return Scene(
        label=label,
        motion=motion.kind,
        width=width,
        height=height,
        fps=fps,
        encoding=encoding,
        background=background_kind,
        background_colours=(bg1, bg2),
        background_seed=background_seed,
        sprite=spec,
        size=motion.size,
        view_centre=motion.view_centre,
        distractors=tuple(distractors),
        noise_sigma=float(noise_sigma),
        noise_seed=noise_seed,
        track=track,
    )
