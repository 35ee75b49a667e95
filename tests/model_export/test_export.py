"""The ONNX contract: names, dtypes, dynamic axes, metadata, parity with PyTorch."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from model_export import export as export_mod
from model_export.data.synth import LABELS
from model_export.export import ExportError, ModelMetadata, export_onnx, read_metadata
from model_export.nets.classifier import RGB_MEAN, RGB_STD, ModelConfig, Normalize, build_model
from model_export.tiny import build_tiny_model

META_KEYS = {
    "labels",
    "num_frames",
    "height",
    "width",
    "sampling",
    "name",
    "version",
    "data_fingerprint",
    "metrics",
    "architecture",
    "created",
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


def test_tiny_model_is_one_self_contained_file(tiny_model: Path) -> None:
    assert [p.name for p in tiny_model.parent.iterdir()] == ["tiny.onnx"]
    proto = onnx.load(str(tiny_model), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def test_input_and_output_contract(tiny_model: Path) -> None:
    graph = onnx.load(str(tiny_model)).graph
    (inp,) = graph.input
    (out,) = graph.output
    assert inp.name == "frames"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    in_dims = inp.type.tensor_type.shape.dim
    assert [d.dim_param for d in in_dims[:2]] == ["batch", "time"]
    assert [d.dim_value for d in in_dims[2:]] == [32, 32, 3]
    assert out.name == "probabilities"
    assert out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    out_dims = out.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "batch"
    assert out_dims[1].dim_value == len(LABELS)


def test_every_metadata_key(tiny_model: Path) -> None:
    meta = read_metadata(tiny_model)
    assert set(meta) == META_KEYS
    assert json.loads(meta["labels"]) == list(LABELS)
    assert (meta["num_frames"], meta["height"], meta["width"]) == ("8", "32", "32")
    assert meta["sampling"] == "tsn-centre"
    assert "test_accuracy" in json.loads(meta["metrics"])
    assert json.loads(meta["architecture"]) == {
        "encoder": "cnn",
        "temporal": "lstm",
        "motion": True,
        "bidirectional": True,
    }
    assert datetime.fromisoformat(meta["created"]).utcoffset() is not None


def test_same_seed_and_source_date_epoch_give_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = build_tiny_model(tmp_path / "a.onnx")
    second = build_tiny_model(tmp_path / "b.onnx")
    assert read_metadata(first)["created"] == "2023-11-14T22:13:20+00:00"
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(("batch", "time"), [(1, 8), (3, 5), (8, 16)])
def test_runtime_probabilities_for_any_batch_and_length(
    tiny_model: Path, batch: int, time: int
) -> None:
    session = ort.InferenceSession(str(tiny_model), providers=["CPUExecutionProvider"])
    clips = np.random.default_rng(batch).integers(0, 256, (batch, time, 32, 32, 3), np.uint8)
    (probs,) = session.run(["probabilities"], {"frames": clips})
    assert probs.shape == (batch, len(LABELS))
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_uint8_scaling_and_normalisation_happen_in_the_graph() -> None:
    frames = torch.zeros((2, 3, 4, 5, 3), dtype=torch.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 0, 128, 255
    out = Normalize()(frames)
    assert out.shape == (6, 3, 4, 5)
    assert out.dtype == torch.float32
    for c, value in enumerate((0, 128, 255)):
        expected = (value / 255.0 - RGB_MEAN[c]) / RGB_STD[c]
        torch.testing.assert_close(out[:, c], torch.full((6, 4, 5), expected))


def test_a_model_with_a_fovea_exports_and_matches_pytorch(tmp_path: Path) -> None:
    # The default model's layout: pooled frames for the CNN, a window copied at full
    # size for the LSTM (GatherElements); export_onnx fails on any mismatch.
    path = build_tiny_model(tmp_path / "fovea.onnx", height=64, width=64, pool=2, fovea=16)
    assert "GatherElements" in {node.op_type for node in onnx.load(str(path)).graph.node}
    assert read_metadata(path)["height"] == "64"


def test_graph_casts_uint8_itself(tiny_model: Path) -> None:
    ops = {node.op_type for node in onnx.load(str(tiny_model)).graph.node}
    assert {"Cast", "LSTM", "Softmax"} <= ops


def test_mismatch_raises_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_mod, "MAX_ABS_DIFF", -1.0)
    config = ModelConfig(num_classes=2, height=16, width=16, channels=(4, 4), feature_dim=4)
    metadata = ModelMetadata(labels=["a", "b"], num_frames=2, height=16, width=16)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(build_model(config), tmp_path / "bad.onnx", metadata=metadata)
    assert list(tmp_path.iterdir()) == []
