"""Content: moving textured pictures that compress like real video, made cheaply in YUV.

A scene is a large textured canvas (multi-scale value noise plus hard-edged
shapes) that the camera pans across, with a few textured objects moving over
it and a little sensor grain. Everything is built in YUV 4:2:0 planes, so a
frame is a few slices and additions and the encoder needs no colour
conversion. Long videos cut to a new scene every ``scene_s`` seconds, as
real ones do. Pure-noise frames would be cheaper still but no codec
compresses them, so their decode cost would be nothing like a real file's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

Plane = npt.NDArray[np.uint8]
# ITU-R BT.601 full-swing RGB -> YCbCr, as rows of (R, G, B) weights.
_TO_YUV = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    dtype=np.float32,
)
GRAIN_FRAMES = 8  # grain patterns, cycled: real sensor noise at no per-frame cost


@dataclass(frozen=True, slots=True)
class _Yuv:
    y: Plane  # (H, W)
    u: Plane  # (H/2, W/2)
    v: Plane  # (H/2, W/2)


def _value_noise(rng: np.random.Generator, height: int, width: int) -> npt.NDArray[np.float32]:
    """Smooth noise over a few octaves, ``(H, W) float32`` in about ``[0, 1]``."""
    out = np.zeros((height, width), dtype=np.float32)
    for cells, weight in ((4, 0.4), (16, 0.25), (64, 0.2), (max(width // 3, 2), 0.15)):
        coarse = rng.random((max(2, height * cells // width), cells), dtype=np.float32)
        image = Image.fromarray(coarse, mode="F").resize((width, height), Image.Resampling.BICUBIC)
        out += weight * np.asarray(image, dtype=np.float32)
    return out


def _rgb_texture(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A colourful noise field with hard-edged shapes on it (edges are what codecs pay for)."""
    field = _value_noise(rng, height, width)[..., None]
    low, high = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    rgb = np.clip(low + (high - low) * field, 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(width * height / 4000)):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(4, 40)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r * rng.uniform(0.3, 1)), fill=colour)
        else:
            draw.rectangle((x - r, y - r / 2, x + r, y + r), fill=colour)
    return image


def _to_yuv(image: Image.Image) -> _Yuv:
    """Even-sized RGB image -> Y at full size, U and V at half size (box-averaged)."""
    rgb = np.asarray(image, dtype=np.float32)
    yuv = rgb @ _TO_YUV.T
    yuv[..., 1:] += 128.0
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    chroma = yuv[:h, :w, 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    return _Yuv(_u8(yuv[:h, :w, 0]), _u8(chroma[..., 0]), _u8(chroma[..., 1]))


def _u8(values: npt.NDArray[np.float32]) -> Plane:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


class _Scene:
    """One camera shot: a canvas, a pan path and moving objects."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.height, self.width = height, width
        # The canvas is 1.5x the frame: room for the camera to wander.
        ch, cw = (height * 3 // 2) // 2 * 2, (width * 3 // 2) // 2 * 2
        self.canvas = _to_yuv(_rgb_texture(rng, ch, cw))
        self.span = (ch - height, cw - width)
        self.phase = rng.uniform(0, 2 * np.pi, size=2)
        # A slow pan: one cycle over the margin every 100-200 frames.
        self.period = rng.uniform(100, 200, size=2)
        self.objects = [self._object(rng) for _ in range(int(rng.integers(1, 4)))]

    def _object(self, rng: np.random.Generator) -> tuple[_Yuv, npt.NDArray[np.float64]]:
        side = int(min(self.height, self.width) * rng.uniform(0.15, 0.35)) // 2 * 2 + 2
        sprite = _to_yuv(_rgb_texture(rng, side, side))
        motion = np.concatenate([rng.uniform(0, 1, 2), rng.uniform(-0.01, 0.01, 2)])
        return sprite, motion

    def frame(self, i: int, grain: Plane) -> Plane:
        """Frame ``i`` as one ``(3H/2, W)`` yuv420p array, ready for ``VideoFrame``."""
        h, w = self.height, self.width
        oy, ox = (
            int((s // 2) * (1 - np.cos(2 * np.pi * i / p + ph)) / 2) * 2
            for s, p, ph in zip(self.span, self.period, self.phase, strict=True)
        )
        y = self.canvas.y[oy : oy + h, ox : ox + w].copy()
        u = self.canvas.u[oy // 2 : (oy + h) // 2, ox // 2 : (ox + w) // 2].copy()
        v = self.canvas.v[oy // 2 : (oy + h) // 2, ox // 2 : (ox + w) // 2].copy()
        for sprite, (py, px, vy, vx) in self.objects:
            side = sprite.y.shape[0]
            # Bounce across the frame: a triangle wave in each axis.
            ty = int(abs((py + vy * i) % 2 - 1) * (h - side)) // 2 * 2
            tx = int(abs((px + vx * i) % 2 - 1) * (w - side)) // 2 * 2
            y[ty : ty + side, tx : tx + side] = sprite.y
            u[ty // 2 : (ty + side) // 2, tx // 2 : (tx + side) // 2] = sprite.u
            v[ty // 2 : (ty + side) // 2, tx // 2 : (tx + side) // 2] = sprite.v
        y = np.clip(y.astype(np.int16) + grain, 0, 255).astype(np.uint8)
        return np.concatenate([y, u.reshape(h // 4, w), v.reshape(h // 4, w)])


def yuv_frames(
    *, seed: int, height: int, width: int, count: int, fps: float, scene_s: float = 20.0
) -> Iterator[Plane]:
    """``count`` frames of moving textured content as ``(3H/2, W) uint8`` yuv420p arrays.

    ``height`` and ``width`` must be multiples of 4. A new scene starts every ``scene_s``.
    """
    if height % 4 or width % 4:
        raise ValueError("height and width must be multiples of 4")
    rng = np.random.default_rng(seed)
    grain = rng.integers(-4, 5, size=(GRAIN_FRAMES, height, width), dtype=np.int16)
    per_scene = max(1, round(scene_s * fps))
    scene: _Scene | None = None
    for i in range(count):
        if i % per_scene == 0:
            scene = _Scene(rng, height, width)
        assert scene is not None
        yield scene.frame(i % per_scene, grain[i % GRAIN_FRAMES])
