"""The ONNX model: its session, the execution provider in use, and the metadata contract.

The file is the contract (docs/design.md): input ``frames`` ``(B, T, H, W, 3) uint8``,
output ``probabilities`` ``(B, C) float32``, and ``vidlstm.*`` metadata_props giving
labels, geometry, sampling policy, name, version, data fingerprint, metrics and
creation time. :func:`load_model` checks all of it and says clearly what is wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.core.errors import InternalError, StartupError
from service.media.timestamps import SAMPLING_POLICY

log = logging.getLogger(__name__)

META_PREFIX = "vidlstm."
REQUIRED_KEYS = (
    "labels",
    "num_frames",
    "height",
    "width",
    "sampling",
    "name",
    "version",
    "data_fingerprint",
    "metrics",
    "created",
)
INPUT_NAME = "frames"
OUTPUT_NAME = "probabilities"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# ORT's severity levels: 0 verbose .. 3 error, 4 fatal.
_ORT_ERROR, _ORT_FATAL = 3, 4


class ModelFileError(StartupError):
    """The model file is missing, unreadable or breaks the contract; start-up stops."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the ``vidlstm.*`` metadata says about the model."""

    name: str
    version: str
    labels: tuple[str, ...]
    num_frames: int
    height: int
    width: int
    sampling: str
    data_fingerprint: str
    metrics: dict[str, Any]
    created: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """``(T, H, W, 3)``: the shape of one clip the model takes."""
        return (self.num_frames, self.height, self.width, 3)

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> ModelInfo:
        meta = {k[len(META_PREFIX) :]: v for k, v in props.items() if k.startswith(META_PREFIX)}
        missing = [META_PREFIX + k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ModelFileError(f"metadata_props lacks {', '.join(missing)}")
        labels = _json(meta, "labels")
        if (
            not isinstance(labels, list)
            or len(labels) < 2
            or not all(isinstance(x, str) and x for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise ModelFileError("vidlstm.labels must be a JSON list of 2+ distinct names")
        metrics = _json(meta, "metrics")
        if not isinstance(metrics, dict):
            raise ModelFileError("vidlstm.metrics must be a JSON object")
        if meta["sampling"] != SAMPLING_POLICY:
            raise ModelFileError(
                f"vidlstm.sampling is {meta['sampling']!r}; this service samples "
                f"{SAMPLING_POLICY!r} and would feed the model frames it was not trained on"
            )
        return cls(
            name=meta["name"],
            version=meta["version"],
            labels=tuple(labels),
            num_frames=_positive_int(meta, "num_frames"),
            height=_positive_int(meta, "height"),
            width=_positive_int(meta, "width"),
            sampling=meta["sampling"],
            data_fingerprint=meta["data_fingerprint"],
            metrics=metrics,
            created=meta["created"],
            metadata=dict(props),
        )


class Model:
    """An ONNX Runtime session that takes clips and gives class probabilities."""

    def __init__(self, session: ort.InferenceSession, info: ModelInfo) -> None:
        self.session = session
        self.info = info
        self.providers: tuple[str, ...] = tuple(session.get_providers())

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph (the first one that loaded)."""
        return self.providers[0]

    def run(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(B, T, H, W, 3) uint8 -> (B, C) float32`` in one ONNX Runtime run."""
        outputs = self.session.run([OUTPUT_NAME], {INPUT_NAME: frames})
        probs = np.asarray(outputs[0])
        if probs.shape != (frames.shape[0], self.info.num_classes):
            raise InternalError(f"model returned shape {probs.shape} for {frames.shape[0]} clips")
        return probs.astype(np.float32, copy=False)


def load_model(
    path: Path,
    *,
    providers: Sequence[str] = (CPU,),
    intra_op_threads: int = 0,
    cuda_tf32: bool = False,
) -> Model:
    """Open and check ``path``; GPU providers are used only if they really load.

    ``cuda_tf32`` lets the CUDA provider compute float32 products in TF32 (faster,
    further off the CPU's probabilities); by default it keeps full float32.
    """
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = _ORT_ERROR
    wanted = [p for p in providers if p in ort.get_available_providers()]
    if not wanted:
        raise ModelFileError(
            f"none of the providers {list(providers)} is in this onnxruntime build "
            f"({ort.get_available_providers()})"
        )
    gpu = any(p != CPU for p in wanted)
    # A CUDA library that fails to load makes ORT print a multi-line error per
    # session; we check what loaded ourselves and log one warning instead.
    ort.set_default_logger_severity(_ORT_FATAL if gpu else _ORT_ERROR)
    try:
        session = ort.InferenceSession(
            str(path), options, providers=[_with_options(p, cuda_tf32=cuda_tf32) for p in wanted]
        )
    except Exception as err:  # ORT raises its own exception types from C++
        raise ModelFileError(f"onnxruntime cannot load {path}: {_first_line(err)}") from err
    finally:
        ort.set_default_logger_severity(_ORT_ERROR)
    loaded = session.get_providers()
    missing = [p for p in wanted if p not in loaded]
    if missing:
        log.warning("execution providers %s did not load; running on %s", missing, loaded[0])
    if loaded[0] not in providers:
        raise ModelFileError(f"none of the providers {list(providers)} loaded (got {loaded})")
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    _check_signature(session, info)
    return Model(session, info)


def _with_options(provider: str, *, cuda_tf32: bool) -> str | tuple[str, dict[str, str]]:
    """``provider`` as ONNX Runtime takes it, with the options we set for it."""
    if provider == CUDA:
        return provider, {"use_tf32": str(int(cuda_tf32))}
    return provider


def _check_signature(session: ort.InferenceSession, info: ModelInfo) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME]:
        raise ModelFileError(f"the graph must take one input {INPUT_NAME!r}")
    if OUTPUT_NAME not in [o.name for o in outputs]:
        raise ModelFileError(f"the graph has no output {OUTPUT_NAME!r}")
    (inp,) = inputs
    out = next(o for o in outputs if o.name == OUTPUT_NAME)
    if inp.type != "tensor(uint8)" or len(inp.shape) != 5:
        raise ModelFileError(f"input {INPUT_NAME!r} must be uint8 [batch, T, H, W, 3]")
    expected = (None, info.num_frames, info.height, info.width, 3)
    for dim, want in zip(inp.shape, expected, strict=True):
        if isinstance(dim, int) and want is not None and dim != want:
            raise ModelFileError(
                f"input shape {inp.shape} disagrees with the metadata's {expected[1:]}"
            )
    if out.type != "tensor(float)" or len(out.shape) != 2:
        raise ModelFileError(f"output {OUTPUT_NAME!r} must be float32 [batch, classes]")
    if isinstance(out.shape[1], int) and out.shape[1] != info.num_classes:
        raise ModelFileError(
            f"output has {out.shape[1]} classes but vidlstm.labels names {info.num_classes}"
        )


def _json(meta: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{META_PREFIX}{key} is not valid JSON: {err}") from err


def _positive_int(meta: Mapping[str, str], key: str) -> int:
    try:
        value = int(meta[key])
    except ValueError as err:
        raise ModelFileError(f"{META_PREFIX}{key} must be an integer") from err
    if value < 1:
        raise ModelFileError(f"{META_PREFIX}{key} must be >= 1")
    return value


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
