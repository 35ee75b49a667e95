"""Style: the families a data set draws from (shapes, fills, backgrounds, codecs, sizes).

``default`` is what the model is trained on; ``alt`` uses disjoint families for every
choice that is not the motion itself, so training on one and evaluating on the other
measures whether a model learned motion rather than appearance.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Style:
    """Appearance choices of one style; every tuple is sampled uniformly unless weighted."""

    name: str
    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    codecs: tuple[tuple[str, float], ...]  # (codec key, weight), see ``encode.CODECS``
    long_sides: tuple[tuple[int, int], ...]  # ranges of the frame's longer side in px
    aspects: tuple[tuple[int, int], ...]  # (width, height) ratios, portrait included


DEFAULT = Style(
    name="default",
    shapes=("polygon", "star", "ellipse", "rectangle", "cross", "blob", "glyph"),
    textures=("solid", "linear", "stripes", "noise", "checker"),
    backgrounds=("uniform", "linear", "noise", "clutter"),
    codecs=(("h264.mp4", 0.45), ("vp9.webm", 0.15), ("mpeg4.avi", 0.2), ("mjpeg.avi", 0.2)),
    long_sides=((128, 480),),
    aspects=((4, 3), (16, 9), (1, 1), (3, 4), (9, 16)),
)

ALT = Style(
    name="alt",
    shapes=("arrow", "ring", "crescent", "heart", "gear"),
    textures=("radial", "dots", "plasma"),
    backgrounds=("radial", "checker", "plasma", "stripes", "dots"),
    codecs=(("h264.mkv", 0.4), ("mpeg2.ts", 0.3), ("vp8.webm", 0.3)),
    long_sides=((96, 126), (482, 544)),
    aspects=((3, 2), (2, 1), (5, 4), (2, 3)),
)

STYLES: dict[str, Style] = {style.name: style for style in (DEFAULT, ALT)}


def get_style(name: str) -> Style:
    """The style called ``name``; ``ValueError`` names the known ones otherwise."""
    try:
        return STYLES[name]
    except KeyError:
        raise ValueError(f"unknown style {name!r}; expected one of {sorted(STYLES)}") from None
