"""Verify: the composed file against the two-stage computation it stands for.

ONNX Runtime on the composed file, and the encoder file through ONNX Runtime
followed by the head through PyTorch, both on the CPU, on random
``(B, T, H, W, 3) uint8`` clips of several batch sizes and lengths (so neither
dynamic axis was specialised); the largest difference must stay within
:data:`~model_export.export.MAX_ABS_DIFF`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from model_export.export import INPUT_NAME, MAX_ABS_DIFF, OUTPUT_NAME, ExportError
from model_export.nets.encoder_spec import EncoderInfo
from model_export.nets.head import TemporalHead
from model_export.nets.onnx_encoder import OnnxEncoder, open_session
from service.pipeline.inference import CPU

log = logging.getLogger(__name__)

VERIFY_BATCHES = (1, 3)


def verify_composed(
    path: Path,
    encoder: EncoderInfo,
    head: TemporalHead,
    *,
    lengths: Sequence[int],
    batch_sizes: Sequence[int] = VERIFY_BATCHES,
    seed: int = 0,
) -> float:
    """Largest ``|composed - two-stage|`` over random clips of every batch size and length;
    raises :class:`ExportError` above ``MAX_ABS_DIFF`` or on a malformed output."""
    session = open_session(path, (CPU,))
    two_stage = OnnxEncoder(encoder, providers=(CPU,))
    pre = encoder.preprocessing
    rng = np.random.default_rng(seed)
    head = head.eval()
    worst = 0.0
    for batch in batch_sizes:
        for length in lengths:
            shape = (batch, length, pre.height, pre.width, 3)
            clips = rng.integers(0, 256, size=shape, dtype=np.uint8)
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: clips})
            feats = two_stage.encode(clips.reshape(-1, *shape[2:])).reshape(batch, length, -1)
            with torch.no_grad():
                want = head(torch.from_numpy(feats)).numpy()
            if got.shape != want.shape or got.dtype != np.float32:
                raise ExportError(f"composed output {got.shape} {got.dtype}, expected {want.shape}")
            diff = float(np.max(np.abs(got - want)))
            worst = max(worst, diff)
            if not diff <= MAX_ABS_DIFF:  # NaN fails too
                raise ExportError(
                    f"the composed file differs from encoder + head by {diff:.2e} "
                    f"(batch {batch}, {length} frames); the limit is {MAX_ABS_DIFF:.0e}"
                )
    log.info("verified %s: max |composed - two-stage| = %.2e", path.name, worst)
    return worst
