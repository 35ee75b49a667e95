"""A pretrained image encoder from an ONNX file: ``(B, H, W, 3) uint8 -> (B, F) float32``.

A frozen per-frame feature extractor (``--encoder onnx:PATH``): an ONNX
Runtime session over the file, fed frames prepared as its
:class:`~model_export.nets.encoder_spec.Preprocessing` says, on CUDA where
that provider really loads, else on the CPU, ``batch_size`` frames a run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from model_export.nets.encoder_spec import EncoderError, EncoderInfo
from service.pipeline.inference import CPU, CUDA

log = logging.getLogger(__name__)

_ORT_ERROR, _ORT_FATAL = 3, 4


@dataclass
class OnnxEncoder:
    """An ONNX Runtime session over the encoder: ``(B, H, W, 3) uint8 -> (B, F) float32``.

    The session opens on first use (a cached feature set never opens it), on
    CUDA where that provider really loads, else on the CPU.
    """

    info: EncoderInfo
    providers: Sequence[str] = (CUDA, CPU)
    threads: int = 0
    batch_size: int = 64
    _session: ort.InferenceSession | None = field(default=None, init=False, repr=False)

    @property
    def session(self) -> ort.InferenceSession:
        if self._session is None:
            self._session = open_session(self.info.path, self.providers, threads=self.threads)
            log.info("%s runs on %s", self.info.name, self._session.get_providers()[0])
        return self._session

    @functools.cached_property
    def feature_dim(self) -> int:
        pre = self.info.preprocessing
        return int(self._run(np.zeros((1, pre.height, pre.width, 3), np.uint8)).shape[1])

    def encode(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(B, H, W, 3) uint8`` frames -> ``(B, F) float32`` features, ``batch_size`` at once."""
        pre = self.info.preprocessing
        if frames.shape[1:] != (pre.height, pre.width, 3) or frames.dtype != np.uint8:
            raise EncoderError(
                f"frames {frames.shape} {frames.dtype}: expected (B, "
                f"{pre.height}, {pre.width}, 3) uint8"
            )
        if len(frames) == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        step = self.batch_size
        return np.concatenate(
            [self._run(frames[i : i + step]) for i in range(0, len(frames), step)]
        )

    def _run(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """One session run: ``(b, H, W, 3) uint8 -> (b, F) float32``."""
        x = self.info.preprocessing.apply(frames)
        (out,) = self.session.run([self.info.output_name], {self.info.input_name: x})
        return flatten_features(np.asarray(out), self.info.path.name)


def flatten_features(out: npt.NDArray[Any], name: str = "encoder") -> npt.NDArray[np.float32]:
    """``(B, F)`` or ``(B, F, 1, ..., 1)`` float32 -> ``(B, F)``; anything else is refused."""
    if out.dtype != np.float32 or out.ndim < 2 or any(d != 1 for d in out.shape[2:]):
        raise EncoderError(
            f"{name} gives {out.dtype} {out.shape}; a feature extractor must give float32 "
            "(B, F) or (B, F, 1, 1): pool its feature map in the graph"
        )
    return out.reshape(out.shape[0], out.shape[1])


def open_session(
    path: Path | bytes, providers: Sequence[str] = (CUDA, CPU), *, threads: int = 0
) -> ort.InferenceSession:
    """A session on the first of ``providers`` that really loads (TF32 off on CUDA)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    wanted = [p for p in providers if p in ort.get_available_providers()] or [CPU]
    with_options = [(p, {"use_tf32": "0"}) if p == CUDA else p for p in wanted]
    # A CUDA library that fails to load prints pages per session; what loaded is logged once.
    ort.set_default_logger_severity(_ORT_FATAL)
    try:
        source = path if isinstance(path, bytes) else str(path)
        session = ort.InferenceSession(source, options, providers=with_options)
    except Exception as err:  # ORT raises its own exception types from C++
        text = str(err).strip().splitlines()
        raise EncoderError(
            f"onnxruntime cannot load the graph: {text[0] if text else err}"
        ) from err
    finally:
        ort.set_default_logger_severity(_ORT_ERROR)
    return session
