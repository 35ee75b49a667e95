"""What an ONNX image encoder wants as input: ``--encoder onnx:PATH``, its overrides, its file.

``--encoder onnx:PATH`` names any ONNX image model (a torchvision or timm
export, a model-zoo file) used as a frozen per-frame feature extractor. What
its input wants is resolved in this order: the command line's overrides, the
file's own ``metadata_props``, its input shape, then the defaults (ImageNet
mean and std, NCHW, values 0-1, RGB).

The ``metadata_props`` an encoder file may carry (all optional):

``vidlstm_encoder.layout``
    ``nchw`` or ``nhwc`` (default: read off the input shape, else ``nchw``).
``vidlstm_encoder.range``
    ``0-1`` (pixels / 255) or ``0-255`` (pixels as they are); default ``0-1``.
``vidlstm_encoder.mean``, ``vidlstm_encoder.std``
    One number or three (``"0.485,0.456,0.406"`` or a JSON list), per input
    channel in the encoder's channel order and in the units of the range; the
    input is ``(pixel - mean) / std``. Default: ImageNet's, in those units.
``vidlstm_encoder.channels``
    ``rgb`` or ``bgr`` (Caffe-style models); default ``rgb``.

The input size comes from the input shape's static height and width, or an
override. The graph must take one float32 image batch with a dynamic batch
axis and give float32 ``(B, F)`` (or ``(B, F, 1, 1)``, flattened) first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import onnx

Layout = Literal["nchw", "nhwc"]
ValueRange = Literal["0-1", "0-255"]
ChannelOrder = Literal["rgb", "bgr"]
Triple = tuple[float, float, float]

SCHEME = "onnx:"
META_PREFIX = "vidlstm_encoder."
IMAGENET_MEAN: Triple = (0.485, 0.456, 0.406)
IMAGENET_STD: Triple = (0.229, 0.224, 0.225)
_FLOAT = onnx.TensorProto.FLOAT


class EncoderError(ValueError):
    """The encoder file or its options cannot be used (a clear message, no traceback)."""


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How frames become the encoder's input: ``x = (pixel [/ 255] - mean) / std``."""

    height: int
    width: int
    layout: Layout = "nchw"
    value_range: ValueRange = "0-1"
    mean: Triple = IMAGENET_MEAN
    std: Triple = IMAGENET_STD
    channels: ChannelOrder = "rgb"

    def scale_shift(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """``(3,)`` scale and shift with ``x = pixel * scale + shift`` (encoder channel order)."""
        unit = 1.0 / 255.0 if self.value_range == "0-1" else 1.0
        std, mean = np.asarray(self.std, np.float64), np.asarray(self.mean, np.float64)
        return (unit / std).astype(np.float32), (-mean / std).astype(np.float32)

    def apply(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """``(B, H, W, 3) uint8 -> (B, 3, H, W)`` (NCHW) or ``(B, H, W, 3)`` float32.

        The same operations in the same order as the composed graph's front
        (:mod:`model_export.onnx_encoder_run.compose`), so both give the same floats.
        """
        scale, shift = self.scale_shift()
        x = frames.astype(np.float32)
        if self.channels == "bgr":
            x = x[..., ::-1]
        x = x * scale + shift
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class EncoderSpec:
    """``onnx:PATH`` and the command line's overrides (``None``: from the file)."""

    path: Path
    size: tuple[int, int] | None = None  # (height, width)
    layout: Layout | None = None
    value_range: ValueRange | None = None
    mean: Triple | None = None
    std: Triple | None = None
    channels: ChannelOrder | None = None

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        size: str | None = None,
        layout: str | None = None,
        value_range: str | None = None,
        mean: str | None = None,
        std: str | None = None,
        channels: str | None = None,
    ) -> EncoderSpec:
        """``"onnx:PATH"`` and override strings (``size`` as ``HxW``, ``mean`` as ``r,g,b``)."""
        if not text.startswith(SCHEME) or len(text) == len(SCHEME):
            raise EncoderError(f"--encoder takes onnx:PATH, got {text!r}")
        return cls(
            path=Path(text[len(SCHEME) :]),
            size=_size(size) if size else None,
            layout=_choice(layout, ("nchw", "nhwc"), "layout") if layout else None,
            value_range=_choice(value_range, ("0-1", "0-255"), "range") if value_range else None,
            mean=_triple(mean, "mean") if mean else None,
            std=_triple(std, "std") if std else None,
            channels=_choice(channels, ("rgb", "bgr"), "channels") if channels else None,
        )

    def resolve(self) -> EncoderInfo:
        """Read the file: its hash, its input and output, and the full preprocessing."""
        if not self.path.is_file():
            raise EncoderError(f"encoder file {self.path} does not exist")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends
            raise EncoderError(f"{self.path} is not an ONNX model: {err}") from err
        graph_input, output = _signature(proto)
        meta = {p.key: p.value for p in proto.metadata_props}
        shape = [d.dim_value if d.HasField("dim_value") else None for d in _dims(graph_input)]
        if shape[0] is not None:
            raise EncoderError(
                f"{self.path.name}: the input's batch axis is fixed at {shape[0]}; "
                "export the encoder with a dynamic batch axis"
            )
        layout = self.layout or _meta_choice(meta, "layout", ("nchw", "nhwc")) or _guess(shape)
        spatial = shape[2:4] if layout == "nchw" else shape[1:3]
        if shape[1 if layout == "nchw" else 3] not in (3, None):
            raise EncoderError(f"{self.path.name}: input {shape} is not 3-channel {layout}")
        value_range = self.value_range or _meta_choice(meta, "range", ("0-1", "0-255")) or "0-1"
        unit = 255.0 if value_range == "0-255" else 1.0
        mean = self.mean or _meta_triple(meta, "mean") or _times(IMAGENET_MEAN, unit)
        std = self.std or _meta_triple(meta, "std") or _times(IMAGENET_STD, unit)
        height, width = self.size or (spatial[0] or 0, spatial[1] or 0)
        if not height or not width:
            raise EncoderError(
                f"{self.path.name}: the input's height and width are dynamic; "
                "pass the size to use (--encoder-size HxW)"
            )
        pre = Preprocessing(
            height=height,
            width=width,
            layout=cast(Layout, layout),
            value_range=cast(ValueRange, value_range),
            mean=mean,
            std=std,
            channels=self.channels or _meta_choice(meta, "channels", ("rgb", "bgr")) or "rgb",
        )
        return EncoderInfo(self.path, file_sha256(self.path), graph_input.name, output.name, pre)


@dataclass(frozen=True, slots=True)
class EncoderInfo:
    """A resolved encoder: the file, its sha256, its input and output names, preprocessing."""

    path: Path
    sha256: str
    input_name: str
    output_name: str
    preprocessing: Preprocessing

    @property
    def name(self) -> str:
        """What the model file and the report call it: ``onnx:<file name>``."""
        return SCHEME + self.path.name

    def summary(self) -> dict[str, Any]:
        """The encoder's part of ``vidlstm.architecture``."""
        return {
            "encoder": self.name,
            "encoder_sha256": self.sha256,
            "encoder_input": self.preprocessing.as_dict(),
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(proto: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, onnx.ValueInfoProto]:
    initialised = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initialised]
    if len(inputs) != 1 or not proto.graph.output:
        raise EncoderError(f"an encoder takes one input image batch; this one takes {len(inputs)}")
    (graph_input,) = inputs
    tensor = graph_input.type.tensor_type
    if tensor.elem_type != _FLOAT or len(tensor.shape.dim) != 4:
        raise EncoderError(
            f"the encoder's input {graph_input.name!r} must be a float32 4-D image batch"
        )
    return graph_input, proto.graph.output[0]


def _dims(value: onnx.ValueInfoProto) -> list[onnx.TensorShapeProto.Dimension]:
    return list(value.type.tensor_type.shape.dim)


def _guess(shape: Sequence[int | None]) -> Layout:
    return "nhwc" if shape[3] == 3 and shape[1] != 3 else "nchw"


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise EncoderError(f"an encoder size is HxW, e.g. 224x224; got {text!r}")
    return int(match[1]), int(match[2])


def _choice(text: str, choices: tuple[str, ...], what: str) -> Any:
    value = text.strip().lower()
    if value not in choices:
        raise EncoderError(f"encoder {what} must be one of {', '.join(choices)}; got {text!r}")
    return value


def _triple(text: str, what: str) -> Triple:
    parts = [p for p in re.split(r"[\s,\[\]]+", text) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or (what == "std" and min(values) <= 0):
        raise EncoderError(f"encoder {what} takes one or three numbers; got {text!r}")
    return values[0], values[1], values[2]


def _meta_choice(meta: Mapping[str, str], key: str, choices: tuple[str, ...]) -> Any:
    text = meta.get(META_PREFIX + key)
    return _choice(text, choices, META_PREFIX + key) if text else None


def _meta_triple(meta: Mapping[str, str], key: str) -> Triple | None:
    text = meta.get(META_PREFIX + key)
    return _triple(text, key) if text else None


def _times(values: Triple, k: float) -> Triple:
    return values[0] * k, values[1] * k, values[2] * k


def describe(info: EncoderInfo) -> str:
    """One log line: what the encoder is and what it is fed."""
    return f"{info.name} (sha256 {info.sha256[:12]}) " + json.dumps(info.preprocessing.as_dict())
