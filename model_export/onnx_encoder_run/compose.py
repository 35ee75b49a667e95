"""Compose: uint8 frames -> preprocessing -> the encoder graph -> the head, in one ONNX file.

The file keeps the service's contract (:mod:`model_export.export`): input
``frames`` ``(batch, time, H, W, 3) uint8`` with batch and time dynamic,
output ``probabilities`` ``(batch, classes) float32``. Three graphs are joined
with :func:`onnx.compose.merge_models`:

1. the front, built here node by node: ``Cast -> Reshape (N*T, H, W, 3) ->
   [Gather BGR] -> Mul, Add (scale and standardise) -> [Transpose NCHW]``, and
   ``Shape -> Gather`` for ``(N, T)``;
2. the encoder file's graph, names prefixed ``encoder/``, brought to one opset
   with the rest, its tensors embedded (the result never refers to other files);
3. the back: ``Reshape (N*T, F[, 1, 1]) -> (N, T, F)``, then the head exported
   from PyTorch (names prefixed ``head/``).

:func:`staged_composition` writes the composition to a temporary file, checks
it (self-contained, ``onnx.checker``) and verifies it: ONNX Runtime on the
file against the two-stage computation (the encoder through ONNX Runtime, the
head through PyTorch) on random clips of several batch sizes and lengths
(:mod:`.verify`); a difference above :data:`~model_export.export.MAX_ABS_DIFF`
raises :class:`~model_export.export.ExportError` and removes the file;
:func:`publish` adds the metadata and moves it into place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import onnx
import onnx.utils
import onnx.version_converter
import torch
from onnx import TensorProto, helper

from model_export.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAME,
    ExportError,
    ModelMetadata,
    check_self_contained,
)
from model_export.nets.encoder_spec import EncoderInfo, file_sha256
from model_export.nets.head import TemporalHead
from model_export.onnx_encoder_run.verify import verify_composed

log = logging.getLogger(__name__)

ENCODER_PREFIX = "encoder/"
HEAD_PREFIX = "head/"
PIXELS = "vidlstm/pixels"  # the front's output: the encoder's input batch
CLIP_DIMS = "vidlstm/clip_dims"  # (2,) int64: N and T of the input
ENCODED = "vidlstm/encoded"  # the back's input: the encoder's output
FEATURES = "features"  # the head's input (N, T, F)
MIN_OPSET = 13  # Softmax over one axis; older encoder graphs are converted up to it
TORCH_MAX_OPSET = 20  # the TorchScript exporter's newest


def compose(encoder: EncoderInfo, head: TemporalHead) -> onnx.ModelProto:
    """The whole model as one graph (no ``vidlstm.*`` metadata yet)."""
    if file_sha256(encoder.path) != encoder.sha256:
        raise ExportError(f"{encoder.path} changed since its features were computed")
    enc = onnx.load(str(encoder.path))  # external tensors, if any, are read in
    opset = max(MIN_OPSET, _opset(enc))
    enc = _encoder_graph(enc, encoder, opset)
    front, back = _front(encoder, opset), _back(head, opset, enc.graph.output[0].type)
    ir_version = max(m.ir_version for m in (front, enc, back))
    for m in (front, enc, back):
        m.ir_version = ir_version
    model = onnx.compose.merge_models(
        front, enc, io_map=[(PIXELS, ENCODER_PREFIX + encoder.input_name)]
    )
    io_map = [(CLIP_DIMS, CLIP_DIMS + ".in"), (ENCODER_PREFIX + encoder.output_name, ENCODED)]
    model = onnx.compose.merge_models(model, back, io_map=io_map)
    del model.metadata_props[:]
    opsets = {o.domain: o.version for o in model.opset_import}  # merging repeats them
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    return model


@contextlib.contextmanager
def staged_composition(
    encoder: EncoderInfo,
    head: TemporalHead,
    *,
    directory: Path,
    lengths: Sequence[int],
    seed: int = 0,
) -> Iterator[tuple[onnx.ModelProto, Path]]:
    """Compose, write to a temporary file in ``directory``, check and verify it; yields
    ``(proto, path)`` and removes the file afterwards (on success, :func:`publish` it)."""
    proto = compose(encoder, head)
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="composed.", suffix=".onnx.tmp", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        onnx.save(proto, str(path), save_as_external_data=False)
        check_self_contained(path)
        onnx.checker.check_model(str(path), full_check=True)
        verify_composed(path, encoder, head, lengths=lengths, seed=seed)
        yield proto, path
    finally:
        path.unlink(missing_ok=True)


def publish(proto: onnx.ModelProto, out: Path, metadata: ModelMetadata) -> Path:
    """``proto`` with ``metadata``, written atomically to ``out``; returns ``out``."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for key, value in metadata.as_props().items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    model.doc_string = f"{metadata.name} {metadata.version}: video classifier ({metadata.sampling})"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        onnx.save(model, str(tmp), save_as_external_data=False)
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the service may run as another user
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)


def _encoder_graph(enc: onnx.ModelProto, info: EncoderInfo, opset: int) -> onnx.ModelProto:
    """The encoder at ``opset``, its one used output kept, names prefixed."""
    initialised = {t.name for t in enc.graph.initializer}
    kept = [i for i in enc.graph.input if i.name not in initialised]  # old files list weights
    del enc.graph.input[:]
    enc.graph.input.extend(kept)
    if len(enc.graph.output) > 1:
        enc = onnx.utils.Extractor(enc).extract_model([info.input_name], [info.output_name])
    if _opset(enc) < opset:
        try:
            enc = onnx.version_converter.convert_version(enc, opset)
        except Exception as err:  # the converter raises bare RuntimeErrors from C++
            raise ExportError(f"cannot bring {info.path.name} to opset {opset}: {err}") from err
    return onnx.compose.add_prefix(enc, ENCODER_PREFIX)


def _front(info: EncoderInfo, opset: int) -> onnx.ModelProto:
    """``frames`` ``(N, T, H, W, 3) uint8`` -> the encoder's input batch, and ``(N, T)``.

    The operations of :meth:`~model_export.nets.encoder_spec.Preprocessing.apply`, in its order.
    """
    pre = info.preprocessing
    scale, shift = pre.scale_shift()
    flat_shape = [-1, pre.height, pre.width, 3]
    consts = [
        helper.make_tensor("vidlstm/frame_shape", TensorProto.INT64, [4], flat_shape),
        helper.make_tensor("vidlstm/scale", TensorProto.FLOAT, [3], scale.tolist()),
        helper.make_tensor("vidlstm/shift", TensorProto.FLOAT, [3], shift.tolist()),
        helper.make_tensor("vidlstm/bgr", TensorProto.INT64, [3], [2, 1, 0]),
        helper.make_tensor("vidlstm/first_two", TensorProto.INT64, [2], [0, 1]),
    ]
    nodes = [
        helper.make_node("Shape", [INPUT_NAME], ["vidlstm/shape"]),
        helper.make_node("Gather", ["vidlstm/shape", "vidlstm/first_two"], [CLIP_DIMS], axis=0),
        helper.make_node("Cast", [INPUT_NAME], ["vidlstm/float"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["vidlstm/float", "vidlstm/frame_shape"], ["vidlstm/flat"]),
    ]
    x = "vidlstm/flat"
    if pre.channels == "bgr":
        nodes.append(helper.make_node("Gather", [x, "vidlstm/bgr"], ["vidlstm/ordered"], axis=3))
        x = "vidlstm/ordered"
    standard = "vidlstm/standard" if pre.layout == "nchw" else PIXELS
    nodes.append(helper.make_node("Mul", [x, "vidlstm/scale"], ["vidlstm/scaled"]))
    nodes.append(helper.make_node("Add", ["vidlstm/scaled", "vidlstm/shift"], [standard]))
    pixel_dims: list[str | int] = ["frames", pre.height, pre.width, 3]
    if pre.layout == "nchw":
        nodes.append(helper.make_node("Transpose", [standard], [PIXELS], perm=[0, 3, 1, 2]))
        pixel_dims = ["frames", 3, pre.height, pre.width]
    frame_dims: list[str | int] = ["batch", "time", pre.height, pre.width, 3]
    graph = helper.make_graph(
        nodes,
        "vidlstm_front",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, frame_dims)],
        [
            helper.make_tensor_value_info(PIXELS, TensorProto.FLOAT, pixel_dims),
            helper.make_tensor_value_info(CLIP_DIMS, TensorProto.INT64, [2]),
        ],
        initializer=consts,
    )
    return _model(graph, opset)


def _back(head: TemporalHead, opset: int, encoded: onnx.TypeProto) -> onnx.ModelProto:
    """``(N*T, F[, 1, 1])`` encoder output and ``(N, T)`` -> the head's probabilities."""
    features = helper.make_tensor_value_info(
        HEAD_PREFIX + FEATURES, TensorProto.FLOAT, ["batch", "time", head.config.feature_dim]
    )
    encoded_info = onnx.ValueInfoProto(name=ENCODED)
    encoded_info.type.CopyFrom(encoded)
    if not encoded.tensor_type.HasField("shape"):  # a rank unknown to the file: (B, F)
        encoded_info.type.tensor_type.shape.dim.add()
        encoded_info.type.tensor_type.shape.dim.add()
    nodes = [
        helper.make_node("Concat", [CLIP_DIMS + ".in", "vidlstm/rest"], ["vidlstm/nt_f"], axis=0),
        helper.make_node("Reshape", [ENCODED, "vidlstm/nt_f"], [HEAD_PREFIX + FEATURES]),
    ]
    glue = _model(
        helper.make_graph(
            nodes,
            "vidlstm_glue",
            [
                encoded_info,
                helper.make_tensor_value_info(CLIP_DIMS + ".in", TensorProto.INT64, [2]),
            ],
            [features],
            initializer=[helper.make_tensor("vidlstm/rest", TensorProto.INT64, [1], [-1])],
        ),
        opset,
    )
    exported = onnx.compose.add_prefix(head_graph(head, opset), HEAD_PREFIX, rename_outputs=False)
    glue.ir_version = exported.ir_version = max(glue.ir_version, exported.ir_version)
    return onnx.compose.merge_models(
        glue, exported, io_map=[(HEAD_PREFIX + FEATURES, HEAD_PREFIX + FEATURES)]
    )


def head_graph(head: TemporalHead, opset: int) -> onnx.ModelProto:
    """The head through PyTorch's exporter: ``features (N, T, F) -> probabilities (N, C)``."""
    example = torch.zeros((2, 3, head.config.feature_dim))  # > 1 each: no axis specialised
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        tracer_warning = torch.jit.TracerWarning  # type: ignore[attr-defined]
        warnings.filterwarnings("ignore", category=tracer_warning)
        path = Path(tmp) / "head.onnx"
        torch.onnx.export(
            head.eval(),
            (example,),
            str(path),
            input_names=[FEATURES],
            output_names=[OUTPUT_NAME],
            dynamic_axes={FEATURES: {0: "batch", 1: "time"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=min(opset, TORCH_MAX_OPSET),
            do_constant_folding=True,
            dynamo=False,
        )
        model = onnx.load(str(path))
    if opset > TORCH_MAX_OPSET:
        model = onnx.version_converter.convert_version(model, opset)
    return model


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", opset)]
    return helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
