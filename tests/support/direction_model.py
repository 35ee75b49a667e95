"""A tiny model trained for real to tell a square moving left from one moving right.

Small enough to train in seconds on a CPU, so the segments test can check
that the top label flips where the motion does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from model_export.export import ModelMetadata, export_onnx
from model_export.nets.classifier import ModelConfig, build_model
from model_export.tiny import train_steps
from tests.support.media import Frames

LABELS = ("move_left", "move_right")
NUM_FRAMES, SIZE = 8, 32
SOURCE_H, SOURCE_W, SQUARE = 120, 160, 24


def direction_clip(rng: np.random.Generator, direction: int) -> Frames:
    """``(T, 32, 32, 3) uint8``: a square crossing part of the frame, as the decoder sees it.

    Rendered straight at 32x32 with the square's edges area-weighted, which is
    close to what swscale makes of ``tests.support.media.moving_square_frames``.
    """
    span = SOURCE_W - SQUARE
    a, b = sorted(rng.uniform(0, span, size=2))
    if b - a < span / 4:
        a, b = max(0.0, a - span / 8), min(float(span), b + span / 8)
    xs = np.linspace(a, b, NUM_FRAMES)[:: 1 if direction > 0 else -1]
    y0 = (SOURCE_H - SQUARE) // 2
    cover_y = _coverage(y0 * SIZE / SOURCE_H, (y0 + SQUARE) * SIZE / SOURCE_H)  # (32,)
    cover_x = np.stack(
        [_coverage(x * SIZE / SOURCE_W, (x + SQUARE) * SIZE / SOURCE_W) for x in xs]
    )  # (T, 32)
    square = cover_y[None, :, None] * cover_x[:, None, :]  # (T, 32, 32)
    frames = 64 + (255 - 64) * square
    return np.repeat(np.round(frames).astype(np.uint8)[..., None], 3, axis=-1)


def _coverage(lo: float, hi: float) -> npt.NDArray[np.float64]:
    """How much of each of the 32 pixels ``[i, i + 1)`` the interval ``[lo, hi)`` covers."""
    edges = np.arange(SIZE, dtype=np.float64)
    cover: npt.NDArray[np.float64] = np.clip(
        np.minimum(edges + 1, hi) - np.maximum(edges, lo), 0.0, 1.0
    )
    return cover


def build_direction_model(out: Path, *, steps: int = 60, batch: int = 16, seed: int = 0) -> Path:
    """Train on left/right clips until it separates them; export with the real exporter."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = ModelConfig(
        num_classes=len(LABELS),
        height=SIZE,
        width=SIZE,
        channels=(8, 16),
        feature_dim=16,
        hidden_size=16,
        dropout=0.0,
    )
    model = build_model(config)

    def direction_batch() -> tuple[torch.Tensor, torch.Tensor]:
        targets = rng.integers(0, 2, size=batch)
        clips = np.stack([direction_clip(rng, 1 if t == 1 else -1) for t in targets])
        return torch.from_numpy(clips), torch.from_numpy(targets)

    final_loss = train_steps(model, (direction_batch() for _ in range(steps)))
    metadata = ModelMetadata(
        labels=list(LABELS),
        num_frames=NUM_FRAMES,
        height=SIZE,
        width=SIZE,
        name="vidlstm-direction",
        version="0.0.0",
        data_fingerprint="moving-square",
        metrics={"final_loss": final_loss},
    )
    return export_onnx(model, out, metadata=metadata, seed=seed)
