"""Render: a scene's frames, one at a time, as ``(H, W, 3) uint8`` RGB.

The backdrop is painted once on a canvas that covers all the camera sees;
each frame samples it through the camera (a pan crops it at whole pixels, a
zoom samples it bilinearly, one axis at a time), stamps the distractors, the
hero and the overlays, then applies the finish (gain, tint, vignette, bars,
sensor noise). A still camera's backdrop, with the distractors that never
change, is drawn once.
``clean=True`` draws only the hero, with colours lifted to at least 0.25, on
black: what the tests measure motion on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

from model_export.data.heldout.actors import Actor, Camera, Look
from model_export.data.heldout.backdrop import Window, paint_canvas
from model_export.data.heldout.scene import Finish, Scene
from model_export.data.heldout.sprite import stamp

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

NOISE_BANK = 4


def canvas_window(camera: Camera, width: int, height: int) -> Window:
    """The smallest canvas (with a 2 px border) holding every view of ``camera``."""
    half = np.array([width, height]) / 2 / camera.zoom[:, None]
    lo = (camera.centre - half).min(axis=0) - 2
    hi = (camera.centre + half).max(axis=0) + 2
    density = float(np.clip(camera.zoom.max(), 1.0, 2.0))
    size = np.ceil((hi - lo) * density).astype(int) + 1
    return Window(
        x0=float(lo[0]), y0=float(lo[1]), width=int(size[0]), height=int(size[1]), density=density
    )


def view(
    canvas: F32, window: Window, *, centre: tuple[float, float], zoom: float, size: tuple[int, int]
) -> F32:
    """What the camera at ``centre``/``zoom`` sees of ``canvas``: ``(H, W, 3)`` float32."""
    width, height = size
    if zoom == 1.0 and window.density == 1.0:
        shifted = _shift(canvas, window, centre=centre, size=size)
        if shifted is not None:
            return shifted

    def axis(n: int, c: float, origin: float, limit: int) -> tuple[npt.NDArray[np.int64], F32]:
        """Canvas index ``(n,)`` left of each sample and the weight of the next one."""
        world = c + (np.arange(n, dtype=np.float64) + 0.5 - n / 2) / zoom
        pos = (world - origin) * window.density - 0.5
        i0 = np.clip(np.floor(pos).astype(np.int64), 0, limit - 2)
        return i0, np.clip(pos - i0, 0, 1).astype(np.float32)

    ix, fx = axis(width, centre[0], window.x0, canvas.shape[1])
    iy, fy = axis(height, centre[1], window.y0, canvas.shape[0])
    lo, hi = int(ix.min()), int(ix.max()) + 2
    band = canvas[:, lo:hi]
    rows = (band[iy] * (1 - fy)[:, None, None] + band[iy + 1] * fy[:, None, None]).astype(
        np.float32, copy=False
    )
    jx = ix - lo
    out = rows[:, jx] * (1 - fx)[None, :, None] + rows[:, jx + 1] * fx[None, :, None]
    return out.astype(np.float32, copy=False)


def _shift(
    canvas: F32, window: Window, *, centre: tuple[float, float], size: tuple[int, int]
) -> F32 | None:
    """:func:`view` at zoom 1 on a canvas of density 1: a crop at whole pixels (the
    backdrop pans by whole pixels, as a digital pan does), ``(H, W, 3)``; None when
    the crop would leave the canvas."""
    width, height = size
    x0 = round(centre[0] - width / 2 - window.x0)
    y0 = round(centre[1] - height / 2 - window.y0)
    if x0 < 0 or y0 < 0 or x0 + width > canvas.shape[1] or y0 + height > canvas.shape[0]:
        return None
    out: F32 = canvas[y0 : y0 + height, x0 : x0 + width].copy()
    return out


def _shade(finish: Finish, width: int, height: int) -> F32:
    """The per-pixel multiplier of the finish: tint times vignette, ``(H, W, 3)``."""
    y = (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / (height / 2)
    x = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / (width / 2)
    r2 = (x[None, :] ** 2 + y[:, None] ** 2) / 2
    vignette = 1 - np.float32(finish.vignette) * r2
    out = vignette[..., None] * np.asarray(finish.tint, dtype=np.float32)
    return out.astype(np.float32, copy=False)


def _bars(frame: F32, finish: Finish) -> None:
    """Paint the finish's letterbox (or pillarbox) bars into ``frame`` in place."""
    if finish.bars <= 0:
        return
    height, width = frame.shape[:2]
    if finish.bars_vertical:
        k = round(finish.bars * width)
        frame[:, :k] = 0.02
        frame[:, width - k :] = 0.02
    else:
        k = round(finish.bars * height)
        frame[:k] = 0.02
        frame[height - k :] = 0.02


def _draw(
    frame: F32, actor: Actor, i: int, camera: Camera | None, look: Look | None = None
) -> None:
    """Stamp ``actor`` at frame ``i``, through ``camera`` (None: already in screen px)."""
    height, width = frame.shape[:2]
    centre = actor.centre[i]
    radius = float(actor.radius[i])
    if camera is not None:
        z = float(camera.zoom[i])
        centre = np.array([width / 2, height / 2]) + z * (centre - camera.centre[i])
        radius *= z
    stamp(
        frame,
        actor.look if look is None else look,
        centre=(float(centre[0]), float(centre[1])),
        radius=radius,
        angle=float(actor.angle[i]),
        opacity=float(actor.opacity[i]),
    )


def render_frames(
    scene: Scene, *, clean: bool = False, only: Sequence[int] | None = None
) -> Iterator[U8]:
    """Yield frames ``(H, W, 3) uint8`` of ``scene`` (those in ``only``, in order, if given)."""
    width, height = scene.width, scene.height
    camera = scene.camera
    indices = range(scene.frames) if only is None else sorted(only)
    rng = np.random.default_rng([scene.seed, 0xF1F1])
    hero_look = Look(scene.hero.look.shape, scene.hero.look.paint.lifted()) if clean else None
    canvas, window = None, canvas_window(camera, width, height)
    extras = () if clean else scene.extras
    fixed: F32 | None = None
    if clean:
        fixed = np.zeros((height, width, 3), dtype=np.float32)
    else:
        canvas = paint_canvas(scene.backdrop, window)
        if camera.is_still():
            fixed = _look_at(canvas, window, camera, 0, (width, height))
            # Distractors that never change are part of the background.
            for extra in (e for e in extras if e.behaviour == "still"):
                _draw(fixed, extra, 0, camera)
            extras = tuple(e for e in extras if e.behaviour != "still")
    finish = scene.finish
    plain = finish.vignette == 0 and finish.tint == (1.0, 1.0, 1.0)
    shade = None if clean or plain else _shade(finish, width, height) * np.float32(255)
    bank = [
        rng.normal(0.0, 255 * finish.noise, (height, width, 3)).astype(np.float32)
        for _ in range(NOISE_BANK if finish.noise > 0 and not clean else 0)
    ]
    picks = rng.integers(NOISE_BANK, size=scene.frames)
    for i in indices:
        if fixed is not None:
            frame = fixed.copy()
        else:
            assert canvas is not None
            frame = _look_at(canvas, window, camera, i, (width, height))
        for extra in extras:
            _draw(frame, extra, i, camera)
        _draw(frame, scene.hero, i, camera, hero_look)
        gain = np.float32(1.0 if clean else finish.gain[i])
        if not clean:
            for overlay in scene.overlays:
                _draw(frame, overlay, i, None)
            _bars(frame, finish)
        if shade is not None:
            frame *= shade
            if gain != 1:
                frame *= gain
        else:
            frame *= np.float32(255) * gain
        if bank:
            frame += bank[int(picks[i])]
        np.clip(frame, 0, 255, out=frame)
        yield frame.astype(np.uint8)


def _look_at(canvas: F32, window: Window, camera: Camera, i: int, size: tuple[int, int]) -> F32:
    """The backdrop as camera frame ``i`` sees it, ``(H, W, 3)``."""
    c = camera.centre[i]
    return view(canvas, window, centre=(float(c[0]), float(c[1])), zoom=float(camera.zoom[i]),
                size=size)  # fmt: skip
