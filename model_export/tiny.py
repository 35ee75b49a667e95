"""A tiny but real model file in seconds, for tests of the service and the exporter.

:func:`build_tiny_model` builds the real LSTM classifier with tiny sizes,
trains it a few steps on random clips and writes it through the real
exporter (metadata and ONNX Runtime verification included).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from model_export.data.synth import LABELS
from model_export.export import ModelMetadata, export_onnx
from model_export.nets.classifier import ModelConfig, VideoClassifier, build_model

log = logging.getLogger(__name__)

TINY_BATCH = 4


def build_tiny_model(
    out: Path,
    *,
    labels: Sequence[str] = LABELS,
    num_frames: int = 8,
    height: int = 32,
    width: int = 32,
    pool: int = 1,
    fovea: int = 0,
    steps: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny verified ``.onnx`` classifier for ``labels`` to ``out``; returns ``out``.

    ``pool`` and ``fovea`` as in :class:`ModelConfig` (the default model's layout).
    """
    torch.manual_seed(seed)
    config = ModelConfig(
        num_classes=len(labels),
        arch="lstm",
        height=height,
        width=width,
        pool=pool,
        fovea=fovea,
        stem=4,
        channels=(8, 8, 16),
        keypoints=4,
        change_channels=4,
        feature_dim=16,
        hidden_size=16,
        dropout=0.0,
    )
    model = build_model(config)
    generator = torch.Generator().manual_seed(seed)

    def random_batch() -> tuple[torch.Tensor, torch.Tensor]:
        shape = (TINY_BATCH, num_frames, height, width, 3)
        clips = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
        return clips, torch.randint(0, len(labels), (TINY_BATCH,), generator=generator)

    train_steps(model, (random_batch() for _ in range(steps)))
    metadata = ModelMetadata(
        labels=list(labels),
        num_frames=num_frames,
        height=height,
        width=width,
        name="vidlstm-tiny",
        version="0.0.0",
        data_fingerprint="random",
        metrics={"test_accuracy": None, "note": "tiny test model trained on random clips"},
    )
    export_onnx(model, out, metadata=metadata, seed=seed)
    log.info("tiny model written to %s", out)
    return out


def train_steps(
    model: VideoClassifier,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float = 1e-2,
) -> float:
    """A few plain AdamW steps on ``(clips uint8 (N, T, H, W, 3), targets (N,))`` batches.

    Leaves the model in eval mode; returns the last batch's loss (nan if none).
    """
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    loss = torch.tensor(float("nan"))
    for clips, targets in batches:
        loss = nn.functional.cross_entropy(model.logits(clips), targets)
        optimiser.zero_grad()
        torch.autograd.backward(loss)
        optimiser.step()
    model.eval()
    return float(loss.detach())
