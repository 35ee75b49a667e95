"""Labels: the eight classes as seen on screen, and what each one asks of a clip.

The meaning follows the training data's convention exactly (image axes, y pointing
down): ``move_*`` is where the content goes on screen (the object of interest
travels that way, or the camera pans so that everything does), ``zoom_in`` /
``zoom_out`` is content growing / shrinking on screen, and ``rotate_cw`` /
``rotate_ccw`` is a clockwise / counter-clockwise turn on screen. A positive
angle in this package turns clockwise on screen.
"""

from __future__ import annotations

from typing import Literal

Axis = Literal["x", "y", "zoom", "turn"]

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

# label -> (axis, sign): +1 is right, down, growing, clockwise on screen.
MOTIONS: dict[str, tuple[Axis, int]] = {
    "move_left": ("x", -1),
    "move_right": ("x", 1),
    "move_up": ("y", -1),
    "move_down": ("y", 1),
    "zoom_in": ("zoom", 1),
    "zoom_out": ("zoom", -1),
    "rotate_cw": ("turn", 1),
    "rotate_ccw": ("turn", -1),
}


def motion_of(label: str) -> tuple[Axis, int]:
    """The axis and sign of ``label``; ``ValueError`` for an unknown label."""
    try:
        return MOTIONS[label]
    except KeyError:
        raise ValueError(f"unknown label {label!r}; expected one of {LABELS}") from None
