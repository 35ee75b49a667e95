"""Checkpoints: a trained classifier and the run's results, saved between stages.

``python -m model_export`` runs its stages separately (train, export, report);
each reads what the previous one left under ``OUT/checkpoints/``. Writes go
through a temporary file, so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from model_export.nets.classifier import ModelConfig, VideoClassifier, build_model


def save_atomically(path: Path, obj: object) -> None:
    """``torch.save(obj)`` to ``path`` through ``PATH.tmp``: a reader (or a run stopped
    mid-write) sees the old file or the new one, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(path: Path, model: VideoClassifier) -> None:
    save_atomically(path, {"config": asdict(model.config), "state": model.state_dict()})


def load_checkpoint(path: Path) -> VideoClassifier:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = dict(saved["config"])
    config["channels"] = tuple(config["channels"])
    if config.pop("backbone_weights", None):  # the in-process torchvision path is gone
        raise ValueError(f"{path} uses a torchvision backbone: use --encoder onnx:PATH instead")
    config.setdefault("bidirectional", False)  # checkpoints from before the option
    config.setdefault("motion", True)  # checkpoints from before the option
    model = build_model(ModelConfig(**config))
    model.load_state_dict(saved["state"])
    return model.eval()


def write_results(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def read_results(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `python -m model_export train` first")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc
