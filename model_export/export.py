"""Export: a trained classifier -> one self-describing ``.onnx`` file, verified.

The file is the contract with the service (see DESIGN.md): input ``frames``
``(batch, time, H, W, 3) uint8`` with batch and time dynamic, output
``probabilities`` ``(batch, classes) float32``, and ``metadata_props`` that
carry labels, geometry, sampling policy, provenance and metrics.

After writing, ONNX Runtime (CPU) is compared with PyTorch on fresh random
clips of several batch sizes and lengths; any difference above
:data:`MAX_ABS_DIFF` raises :class:`ExportError` and no file is left behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from model_export.nets.classifier import VideoClassifier
from service.media.timestamps import SAMPLING_POLICY

log = logging.getLogger(__name__)

INPUT_NAME = "frames"
OUTPUT_NAME = "probabilities"
OPSET = 17
MAX_ABS_DIFF = 1e-4
META_PREFIX = "vidlstm."
VERIFY_BATCHES = (1, 3, 8)


class ExportError(RuntimeError):
    """The exported graph is not faithful to the PyTorch model, or not self-contained."""


def created_now() -> str:
    """The creation time to record: ``SOURCE_DATE_EPOCH`` when set, so that a rebuild
    with the same seed writes the same bytes (reproducible-builds.org), else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return when.isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What the service reads from ``metadata_props`` (keys prefixed ``vidlstm.``)."""

    labels: Sequence[str]
    num_frames: int
    height: int
    width: int
    name: str = "vidlstm"
    version: str = "0.1.0"
    data_fingerprint: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    sampling: str = SAMPLING_POLICY
    architecture: dict[str, Any] = field(default_factory=dict)  # the model's own, if empty
    created: str = field(default_factory=created_now)

    def as_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries, all strings."""
        return {
            META_PREFIX + "labels": json.dumps(list(self.labels)),
            META_PREFIX + "num_frames": str(self.num_frames),
            META_PREFIX + "height": str(self.height),
            META_PREFIX + "width": str(self.width),
            META_PREFIX + "sampling": self.sampling,
            META_PREFIX + "name": self.name,
            META_PREFIX + "version": self.version,
            META_PREFIX + "data_fingerprint": self.data_fingerprint,
            META_PREFIX + "metrics": json.dumps(self.metrics, sort_keys=True),
            META_PREFIX + "architecture": json.dumps(self.architecture, sort_keys=True),
            META_PREFIX + "created": self.created,
        }


def export_onnx(
    model: VideoClassifier,
    out: Path,
    *,
    metadata: ModelMetadata,
    verify_lengths: Sequence[int] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``model`` to ``out`` atomically and verify it against PyTorch; returns ``out``.

    ``verify_lengths`` are the clip lengths checked (default: ``T``, ``T // 2`` and ``2 T``).
    """
    if len(metadata.labels) != model.config.num_classes:
        raise ExportError(
            f"{len(metadata.labels)} labels for a model with {model.config.num_classes} classes"
        )
    model = model.eval()
    if not metadata.architecture:
        metadata = replace(metadata, architecture=model.config.summary())
    out.parent.mkdir(parents=True, exist_ok=True)
    t = metadata.num_frames
    lengths = verify_lengths or sorted({t, max(1, t // 2), 2 * t})
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write_graph(model, tmp, metadata)
        check_self_contained(tmp)
        verify(model, tmp, batch_sizes=VERIFY_BATCHES, lengths=lengths, seed=seed)
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the service may run as another user
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%.1f kB)", out, out.stat().st_size / 1024)
    return out


def _write_graph(model: VideoClassifier, path: Path, metadata: ModelMetadata) -> None:
    # An example batch > 1 and T > 1 keeps the exporter from specialising either axis.
    example = torch.zeros(
        (2, metadata.num_frames, metadata.height, metadata.width, 3), dtype=torch.uint8
    )
    with torch.no_grad(), warnings.catch_warnings():
        # The LSTM warning about batch sizes: verify() runs batches 1, 3 and 8.
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        # The TorchScript exporter is chosen on purpose (one self-contained file).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # Shape checks in nn.LSTM trace as constants; verify() proves other shapes work.
        tracer_warning = torch.jit.TracerWarning  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", category=tracer_warning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 1: "time"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.as_props().items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    proto.doc_string = f"{metadata.name} {metadata.version}: video classifier ({SAMPLING_POLICY})"
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path), save_as_external_data=False)


def check_self_contained(path: Path) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    external = [
        t.name
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL or t.external_data
    ]
    if external:
        raise ExportError(f"{path.name} refers to external tensor data: {external[:5]}")


def verify(
    model: VideoClassifier,
    path: Path,
    *,
    batch_sizes: Sequence[int] = VERIFY_BATCHES,
    lengths: Sequence[int],
    seed: int = 0,
) -> float:
    """Largest ``|ORT - PyTorch|`` over random clips of every batch size and length.

    Raises :class:`ExportError` above :data:`MAX_ABS_DIFF` or on a malformed output.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    height, width = model.config.height, model.config.width
    rng = np.random.default_rng(seed)
    worst = 0.0
    model = model.eval()
    for batch in batch_sizes:
        for length in lengths:
            clips = rng.integers(0, 256, size=(batch, length, height, width, 3), dtype=np.uint8)
            got = session.run([OUTPUT_NAME], {INPUT_NAME: clips})[0]
            with torch.no_grad():
                want = model(torch.from_numpy(clips)).numpy()
            if got.shape != want.shape or got.dtype != np.float32:
                raise ExportError(f"ONNX output {got.shape} {got.dtype}, expected {want.shape}")
            diff = float(np.max(np.abs(got - want)))
            worst = max(worst, diff)
            if diff > MAX_ABS_DIFF:
                raise ExportError(
                    f"ONNX Runtime differs from PyTorch by {diff:.2e} "
                    f"(batch {batch}, {length} frames); the limit is {MAX_ABS_DIFF:.0e}"
                )
    log.info("verified %s: max |ORT - torch| = %.2e", path.name, worst)
    return worst


def read_metadata(path: Path) -> dict[str, str]:
    """The ``vidlstm.*`` metadata of an exported file, prefix stripped."""
    proto = onnx.load(str(path), load_external_data=False)
    return {
        p.key.removeprefix(META_PREFIX): p.value
        for p in proto.metadata_props
        if p.key.startswith(META_PREFIX)
    }
