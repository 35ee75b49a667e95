"""Render: a scene's frames as ``(H, W, 3) uint8`` RGB, a pure function of the scene.

Per video, the static part (background, static distractors, and when the camera
moves the main object too) is drawn once into a *world* image that covers every
view of the clip. Per frame: cut the view out of the world (a crop; an antialiased
resize of a moving box for pans and zooms; an affine warp when the camera turns),
paste the jittering distractors and the main object's warped sprite, then apply
brightness flicker and sensor noise. Frame ``i`` depends only on the scene's static
part and on ``track[i]``, so a reversed track renders the reversed clip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from model_export.data.synth.background import background
from model_export.data.synth.scene import NOISE_PAD, VIEW_KINDS, Scene
from model_export.data.synth.sprite import Patch, Sprite, build_sprite, place
from model_export.data.synth.track import on_screen

Pixels = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

_MAX_WORLD_RES = 2.0  # world px per screen px, at most (whole-view zooms)


@dataclass(frozen=True, slots=True)
class Rendering:
    """A rendered clip and its ground truth on screen.

    ``frames (N, H, W, 3) uint8``; ``centre (N, 2)`` px and ``radius (N,)`` px of the main
    object's circle; ``angle (N,)`` degrees clockwise; masks ``(N, H, W) bool`` of the
    main object and of its marker, when asked for (the marker's is all False if none).
    """

    frames: Pixels
    centre: FloatArray
    radius: FloatArray
    angle: FloatArray
    object_mask: Mask | None = None
    marker_mask: Mask | None = None


@dataclass(frozen=True, slots=True)
class _Frame:
    pixels: Pixels
    object_mask: Image.Image | None
    marker_mask: Image.Image | None


def _offset(scene: Scene) -> tuple[FloatArray, FloatArray]:
    t = scene.track
    return t.pan_x + t.shake_x, t.pan_y + t.shake_y


def screen_track(scene: Scene) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Where the main object is on screen: centre ``(N, 2)``, radius ``(N,)``, angle ``(N,)``."""
    return on_screen(scene.track, centre=scene.view_centre, size=scene.size)


def _world_box(scene: Scene) -> tuple[int, int, int, int]:
    """Integer world bounds ``(x0, y0, x1, y1)`` holding every view of the clip."""
    t = scene.track
    cx, cy = scene.view_centre
    ox, oy = _offset(scene)
    c, s = np.cos(np.radians(t.turn)), np.sin(np.radians(t.turn))
    xs, ys = [], []
    for px, py in ((0, 0), (scene.width, 0), (0, scene.height), (scene.width, scene.height)):
        # World point on screen corner p: c + R(-turn) (p + offset - c) / view.
        dx, dy = px + ox - cx, py + oy - cy
        xs.append(cx + (c * dx + s * dy) / t.view)
        ys.append(cy + (-s * dx + c * dy) / t.view)
    x0, x1 = math.floor(float(np.min(xs))) - 2, math.ceil(float(np.max(xs))) + 2
    y0, y1 = math.floor(float(np.min(ys))) - 2, math.ceil(float(np.max(ys))) + 2
    return x0, y0, x1, y1


class _Renderer:
    """Holds one scene's pre-drawn parts; ``frame(i)`` renders frame ``i``."""

    def __init__(self, scene: Scene, *, masks: bool) -> None:
        self.scene = scene
        self.masks = masks
        t = scene.track
        self.camera = scene.motion in VIEW_KINDS
        self.turning = bool(np.any(t.turn != 0))
        self.res = k = min(float(t.view.max()), _MAX_WORLD_RES)
        self.origin = x0, y0, x1, y1 = _world_box(scene)
        size = (math.ceil((x1 - x0) * k), math.ceil((y1 - y0) * k))
        unit = min(scene.width, scene.height) * k
        rng = np.random.default_rng(scene.background_seed)
        self.world = background(scene.background, *size, scene.background_colours, rng, unit=unit)
        self.movers: list[tuple[int, Sprite]] = []
        for j, d in enumerate(scene.distractors):
            if d.jitter > 0:
                self.movers.append((j, build_sprite(d.sprite, d.size / 2)))
                continue
            sprite = build_sprite(d.sprite, d.size / 2 * k)
            centre = ((d.x - x0) * k, (d.y - y0) * k)
            patch = place(sprite, centre=centre, radius=d.size / 2 * k, angle=d.angle, frame=size)
            self._paste(self.world, patch)
        self.world_masks: tuple[Image.Image, Image.Image] | None = None
        radius = scene.size / 2 * float(t.scale.max()) * k
        if self.camera:  # the object sits still in the world
            sprite = build_sprite(scene.sprite, radius, markers=masks)
            centre = ((float(t.x[0]) - x0) * k, (float(t.y[0]) - y0) * k)
            angle = float(t.angle[0])
            patch = place(
                sprite, centre=centre, radius=radius, angle=angle, frame=size, marker=masks
            )
            self._paste(self.world, patch)
            if masks:
                self.world_masks = self._masks(patch, size)
        else:
            levels = 3 if float(t.scale.max() / t.scale.min()) > 1.4 else 1
            self.sprite = build_sprite(scene.sprite, radius, levels=levels, markers=masks)
        self.noise: npt.NDArray[np.int16] | None = None
        if scene.noise_sigma > 0:
            noise_rng = np.random.default_rng(scene.noise_seed)
            shape = (scene.height + NOISE_PAD, scene.width + NOISE_PAD, 3)
            self.noise = np.round(noise_rng.normal(0.0, scene.noise_sigma, shape)).astype(np.int16)

    @staticmethod
    def _paste(image: Image.Image, patch: Patch | None) -> None:
        if patch is not None:
            image.paste(patch.image, (patch.x, patch.y), patch.image)

    @staticmethod
    def _masks(patch: Patch | None, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
        obj, marker = Image.new("L", size, 0), Image.new("L", size, 0)
        if patch is not None:
            obj.paste(patch.image.getchannel("A"), (patch.x, patch.y))
            if patch.marker is not None:
                marker.paste(patch.marker, (patch.x, patch.y))
        return obj, marker

    def _view(self, image: Image.Image, i: int) -> Image.Image:
        """The camera's view of world-sized ``image`` in frame ``i`` (pans, zooms, turns)."""
        scene, t, k = self.scene, self.scene.track, self.res
        size = (scene.width, scene.height)
        x0, y0 = self.origin[:2]
        cx, cy = scene.view_centre
        v = float(t.view[i])
        ox = float(t.pan_x[i] + t.shake_x[i])
        oy = float(t.pan_y[i] + t.shake_y[i])
        if not self.turning:  # resize of a box: antialiased when the world is finer
            box = (
                (cx + (ox - cx) / v - x0) * k,
                (cy + (oy - cy) / v - y0) * k,
                (cx + (scene.width + ox - cx) / v - x0) * k,
                (cy + (scene.height + oy - cy) / v - y0) * k,
            )
            return image.resize(size, Image.Resampling.BILINEAR, box=box)
        # Screen p -> world px: k (c - origin) + k R(-turn) (p + offset - c) / v.
        theta = math.radians(float(t.turn[i]))
        c, s = math.cos(theta) * k / v, math.sin(theta) * k / v
        ex, ey = ox - cx, oy - cy
        coeffs = (
            c,
            s,
            k * (cx - x0) + c * ex + s * ey,
            -s,
            c,
            k * (cy - y0) - s * ex + c * ey,
        )
        return image.transform(size, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)

    def frame(self, i: int) -> _Frame:
        scene, t = self.scene, self.scene.track
        size = (scene.width, scene.height)
        obj_mask: Image.Image | None = None
        marker_mask: Image.Image | None = None
        if self.camera:
            image = self._view(self.world, i)
            if self.world_masks is not None:
                obj_mask, marker_mask = (self._view(w, i) for w in self.world_masks)
        else:
            sx, sy = int(t.shake_x[i]), int(t.shake_y[i])
            x0, y0 = self.origin[:2]
            left, top = sx - x0, sy - y0
            image = self.world.crop((left, top, left + scene.width, top + scene.height))
            for j, sprite in self.movers:
                d = scene.distractors[j]
                centre = (d.x + float(t.jitter[i, j, 0]) - sx, d.y + float(t.jitter[i, j, 1]) - sy)
                patch = place(sprite, centre=centre, radius=d.size / 2, angle=d.angle, frame=size)
                self._paste(image, patch)
            patch = place(
                self.sprite,
                centre=(float(t.x[i]) - sx, float(t.y[i]) - sy),
                radius=scene.size / 2 * float(t.scale[i]),
                angle=float(t.angle[i]),
                frame=size,
                marker=self.masks,
            )
            self._paste(image, patch)
            if self.masks:
                obj_mask, marker_mask = self._masks(patch, size)
        return _Frame(self._finish(image, i), obj_mask, marker_mask)

    def _finish(self, image: Image.Image, i: int) -> Pixels:
        """Flicker and sensor noise: ``(H, W, 3) uint8``."""
        t = self.scene.track
        gain = float(t.gain[i])
        if self.noise is None and gain == 1.0:
            return np.asarray(image, np.uint8).copy()
        pixels: npt.NDArray[np.int16] | npt.NDArray[np.int32] = np.asarray(image, np.int16)
        if gain != 1.0:  # fixed point, in int32: 255 * 320 overflows int16
            pixels = (np.asarray(image, np.int32) * round(gain * 256)) >> 8
        if self.noise is not None:
            ox, oy = int(t.noise_x[i]), int(t.noise_y[i])
            pixels = pixels + self.noise[oy : oy + self.scene.height, ox : ox + self.scene.width]
        return np.clip(pixels, 0, 255).astype(np.uint8)


def iter_frames(scene: Scene) -> Iterator[Pixels]:
    """Frames of ``scene`` one by one, each ``(H, W, 3) uint8`` (for streaming encodes)."""
    renderer = _Renderer(scene, masks=False)
    for i in range(scene.num_frames):
        yield renderer.frame(i).pixels


def render_video(scene: Scene, *, masks: bool = False) -> Rendering:
    """All frames of ``scene`` as ``(N, H, W, 3) uint8`` with its on-screen ground truth.

    ``masks`` adds ``(N, H, W) bool`` masks of the main object and its marker.
    """
    renderer = _Renderer(scene, masks=masks)
    rendered = [renderer.frame(i) for i in range(scene.num_frames)]
    centre, radius, angle = screen_track(scene)

    def stack(images: list[Image.Image | None]) -> Mask:
        return np.stack([np.asarray(im, np.uint8) > 127 for im in images])

    return Rendering(
        frames=np.stack([f.pixels for f in rendered]),
        centre=centre,
        radius=radius,
        angle=angle,
        object_mask=stack([f.object_mask for f in rendered]) if masks else None,
        marker_mask=stack([f.marker_mask for f in rendered]) if masks else None,
    )
