"""Background: the static backdrop of a scene (fills, or a fill with clutter on it)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from model_export.data.synth.texture import RGB, texture

# Background kind -> the fill it uses; "uniform" is a plain colour, "clutter" adds shapes.
_FILL = {
    "uniform": "solid",
    "linear": "linear",
    "noise": "noise",
    "radial": "radial",
    "checker": "checker",
    "plasma": "plasma",
    "stripes": "stripes",
    "dots": "dots",
}
BACKGROUNDS = (*_FILL, "clutter")


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
    return r, g, b


def _clutter(image: Image.Image, rng: np.random.Generator, unit: float) -> None:
    """Draw random static ellipses, boxes and polygons onto ``image`` in place.

    4-16 of them per ``unit`` x ``unit`` square, each 3-15% of ``unit`` across.
    """
    draw = ImageDraw.Draw(image)
    side = unit
    density = image.width * image.height / (unit * unit)
    for _ in range(round(rng.integers(4, 17) * density)):
        cx, cy = rng.uniform(0, image.width), rng.uniform(0, image.height)
        r = side * rng.uniform(0.03, 0.15)
        colour = _random_colour(rng)
        kind = int(rng.integers(3))
        if kind == 0:
            ry = r * rng.uniform(0.4, 1.0)
            draw.ellipse((cx - r, cy - ry, cx + r, cy + ry), fill=colour)
        elif kind == 1:
            ry = r * rng.uniform(0.3, 1.0)
            draw.rectangle((cx - r, cy - ry, cx + r, cy + ry), fill=colour)
        else:
            n = int(rng.integers(3, 7))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = r * rng.uniform(0.5, 1.0, n)
            points = [
                (float(cx + q * np.cos(a)), float(cy + q * np.sin(a)))
                for a, q in zip(t, radii, strict=True)
            ]
            draw.polygon(points, fill=colour)


def background(
    kind: str,
    width: int,
    height: int,
    colours: tuple[RGB, RGB],
    rng: np.random.Generator,
    *,
    unit: float | None = None,
) -> Image.Image:
    """An RGB image ``width`` x ``height`` of background ``kind`` between two colours.

    Pattern sizes are relative to ``unit`` px (default: the shorter side), so a world
    larger than the frame looks like the frame's own background, only more of it.
    """
    unit = unit or min(width, height)
    if kind == "clutter":
        base = ("solid", "linear", "noise")[int(rng.integers(3))]
        image = Image.fromarray(texture(base, width, height, colours, rng, unit=unit), "RGB")
        _clutter(image, rng, unit)
        return image
    return Image.fromarray(texture(_FILL[kind], width, height, colours, rng, unit=unit), "RGB")
