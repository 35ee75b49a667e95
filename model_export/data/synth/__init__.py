"""Embedded synthetic data set: labelled videos told apart only by temporal order.

Eight classes in four time-reversed pairs (left/right, up/down, zoom in/out, turn
clockwise/counter-clockwise), rendered with random shapes, textures, backgrounds,
camera shake, flicker and noise, and encoded with several codecs and containers.
Stages: ``scene`` (draw parameters) -> ``render`` (frames) -> ``encode`` (file),
driven by ``generate`` (splits, workers, manifest).
"""

from model_export.data.synth.generate import generate
from model_export.data.synth.render import Rendering, render_video
from model_export.data.synth.scene import LABELS, Scene, sample_scene

__all__ = ["LABELS", "Rendering", "Scene", "generate", "render_video", "sample_scene"]
