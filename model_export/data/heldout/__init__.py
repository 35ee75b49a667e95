"""Held-out renderer: the eight classes drawn again from scratch, for evaluation only.

Nothing here is shared with :mod:`model_export.data.synth`: its own shapes
(signed distance fields), paints, backdrops, clutter, motion curves, camera,
codecs, containers, sizes and frame rates. Never train or choose a model on
what it renders; it measures how far a model generalises beyond the look it
was trained on. Stages: ``scene`` (every choice, from a seed, with
``choreography`` for the labelled motion) -> ``render`` (frames) -> ``encode``
(file), driven by ``generate`` (workers, manifest, reuse).
"""

from model_export.data.heldout.generate import generate
from model_export.data.heldout.labels import LABELS
from model_export.data.heldout.render import render_frames
from model_export.data.heldout.scene import Scene, sample_scene

__all__ = ["LABELS", "Scene", "generate", "render_frames", "sample_scene"]
