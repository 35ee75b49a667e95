"""Sprite: draw one look into a frame at a pose, straight from its distance field.

Only the pixels of the object's bounding box are evaluated, every frame, at
the exact pose: no texture is warped, so edges stay crisp at any size and turn.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from model_export.data.heldout.actors import Look
from model_export.data.heldout.paint import colours
from model_export.data.heldout.shapes import sdf

F32 = npt.NDArray[np.float32]

EXTENT = 1.2  # every shape lies within this many radii of its centre


def local_grid(
    x0: int, y0: int, x1: int, y1: int, *, centre: tuple[float, float], radius: float, angle: float
) -> tuple[F32, F32]:
    """Local ``u, v`` ``(y1 - y0, x1 - x0)`` of the pixel centres of a screen box.

    The object's frame: origin at ``centre``, unit ``radius`` px, turned ``angle``
    degrees clockwise on screen (so ``u, v`` are the screen offsets turned back).
    """
    a = math.radians(angle)
    c, s = np.float32(math.cos(a)), np.float32(math.sin(a))
    dx = ((np.arange(x0, x1, dtype=np.float32) + 0.5 - centre[0]) / radius)[None, :]
    dy = ((np.arange(y0, y1, dtype=np.float32) + 0.5 - centre[1]) / radius)[:, None]
    u = (c * dx + s * dy).astype(np.float32)
    v = (c * dy - s * dx).astype(np.float32)
    return u, v


def stamp(
    frame: F32,
    look: Look,
    *,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    opacity: float = 1.0,
) -> None:
    """Composite ``look`` over ``frame (H, W, 3)`` float32 in place, anti-aliased."""
    if radius <= 0.25 or opacity <= 0:
        return
    height, width = frame.shape[:2]
    reach = EXTENT * radius + 1.0
    x0, x1 = max(0, math.floor(centre[0] - reach)), min(width, math.ceil(centre[0] + reach))
    y0, y1 = max(0, math.floor(centre[1] - reach)), min(height, math.ceil(centre[1] + reach))
    if x0 >= x1 or y0 >= y1:
        return
    u, v = local_grid(x0, y0, x1, y1, centre=centre, radius=radius, angle=angle)
    d = sdf(look.shape, u, v)
    cover = np.clip(np.float32(0.5) - d * np.float32(radius), 0, 1) * np.float32(opacity)
    rows, cols = np.nonzero(cover.max(axis=1) > 0)[0], np.nonzero(cover.max(axis=0) > 0)[0]
    if len(rows) == 0:
        return
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    u, v, d, cover = u[r0:r1, c0:c1], v[r0:r1, c0:c1], d[r0:r1, c0:c1], cover[r0:r1, c0:c1]
    rgb = colours(look.paint, u, v, d, 1.0 / radius)
    region = frame[y0 + r0 : y0 + r1, x0 + c0 : x0 + c1]
    region += (rgb - region) * cover[..., None]
