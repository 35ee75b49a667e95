"""A pretrained encoder through ONNX: its spec, cached features, the composed file's
contract and parity, and the composed file served over HTTP.

The encoder is a small CNN exported here; the videos are moving squares made here.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pytest
import torch
from torch import nn

from model_export.checkpoint import read_results
from model_export.cli import main
from model_export.config import RunConfig
from model_export.data import cache as cache_mod
from model_export.data.augment import default_config
from model_export.data.dataset import VideoDataset, load_dataset
from model_export.data.features import PLAIN, Flip, FrameFeatures, allowed_flips, decode_features
from model_export.data.folder import scan
from model_export.export import ExportError, read_metadata
from model_export.nets.encoder_spec import EncoderError, EncoderInfo, EncoderSpec
from model_export.nets.head import HeadConfig, TemporalHead, load_head
from model_export.nets.onnx_encoder import OnnxEncoder, flatten_features
from model_export.onnx_encoder_run import compose as compose_mod
from model_export.onnx_encoder_run.compose import staged_composition
from model_export.onnx_encoder_run.verify import verify_composed
from model_export.pipeline import write_run_report
from service.app import create_app
from service.pipeline.inference import CPU, load_model
from tests.conftest import make_test_settings
from tests.support.media import sliding_square_folder
from tests.support.serving import asgi_client

SIDE, T = 32, 4
LABELS = ("move_left", "move_right")


class TinyEncoder(nn.Module):
    """``(B, 3, 32, 32)`` (or NHWC) float -> ``(B, 16, 1, 1)``: a few convolutions that keep
    where things are (flattened, not pooled), shaped like a pooled backbone's output."""

    def __init__(self, *, nhwc: bool = False) -> None:
        super().__init__()
        self.nhwc = nhwc
        self.convs = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.project = nn.Linear(8 * 8 * 8, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        out: torch.Tensor = self.project(self.convs(x).flatten(1))
        return out[:, :, None, None]


def export_encoder(
    path: Path, *, opset: int = 17, nhwc: bool = False, props: dict[str, str] | None = None
) -> Path:
    torch.manual_seed(0)
    shape = (2, SIDE, SIDE, 3) if nhwc else (2, 3, SIDE, SIDE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TinyEncoder(nhwc=nhwc).eval(),
            (torch.zeros(shape),),
            str(path),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}},
            opset_version=opset,
            dynamo=False,
        )
    if props:
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, props)
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_encoder(tmp_path_factory.mktemp("encoder") / "tiny_encoder.onnx")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sliding_square_folder(tmp_path_factory.mktemp("videos") / "data", LABELS, per_label=5)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, folder: Path, encoder_file: Path
) -> tuple[RunConfig, dict[str, Any]]:
    root = tmp_path_factory.mktemp("run")
    cfg = RunConfig(
        out=root / "models",
        data=folder,
        cache_dir=root / "cache",
        epochs=2,
        num_frames=T,
        workers=1,
        progress=False,
    )
    # Through the command line, as a user runs it: `all` trains, exports and reports.
    args = ["all", "--data", str(folder), "--out", str(cfg.out), "--cache", str(cfg.cache_dir)]
    args += ["--epochs", "2", "--frames", str(T), "--workers", "1", "--no-progress"]
    assert main([*args, "--encoder", f"onnx:{encoder_file}"]) == 0
    assert (cfg.out / "report.json").is_file()
    return cfg, read_results(cfg.checkpoints / "results.json")


@pytest.fixture(scope="module")
def info(encoder_file: Path) -> EncoderInfo:
    return EncoderSpec.parse(f"onnx:{encoder_file}").resolve()


def dataset(cfg: RunConfig) -> VideoDataset:
    assert cfg.data is not None
    return load_dataset(
        cfg.data,
        num_frames=T,
        height=SIDE,
        width=SIDE,
        cache_dir=cfg.cache_dir,
        workers=1,
        progress=False,
    )


# -- the spec -------------------------------------------------------------------------


def test_the_spec_comes_from_the_file(info: EncoderInfo, encoder_file: Path) -> None:
    pre = info.preprocessing
    assert (pre.height, pre.width, pre.layout, pre.value_range, pre.channels) == (
        SIDE,
        SIDE,
        "nchw",
        "0-1",
        "rgb",
    )
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    assert (info.input_name, info.output_name) == ("image", "embedding")
    assert info.sha256 == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    assert info.name == "onnx:tiny_encoder.onnx"


def test_metadata_then_flags_override_the_defaults(tmp_path: Path) -> None:
    props = {
        "vidlstm_encoder.range": "0-255",
        "vidlstm_encoder.mean": "[123.7, 116.3, 103.5]",
        "vidlstm_encoder.channels": "bgr",
    }
    path = export_encoder(tmp_path / "e.onnx", props=props)
    pre = EncoderSpec.parse(f"onnx:{path}", std="58,57,57", size="24x40").resolve().preprocessing
    assert (pre.value_range, pre.channels, pre.mean) == ("0-255", "bgr", (123.7, 116.3, 103.5))
    assert (pre.std, pre.height, pre.width) == ((58.0, 57.0, 57.0), 24, 40)
    # Without metadata, the 0-255 range gets ImageNet's statistics in its own units; the
    # layout is read off the input shape.
    nhwc_path = export_encoder(tmp_path / "nhwc.onnx", nhwc=True)
    nhwc = EncoderSpec.parse(f"onnx:{nhwc_path}", value_range="0-255").resolve()
    assert nhwc.preprocessing.layout == "nhwc"
    assert nhwc.preprocessing.mean == pytest.approx((0.485 * 255, 0.456 * 255, 0.406 * 255))


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("tiny.onnx", {}, "onnx:PATH"),
        ("onnx:", {}, "onnx:PATH"),
        ("onnx:x.onnx", {"size": "224"}, "HxW"),
        ("onnx:x.onnx", {"layout": "nchwc"}, "nchw, nhwc"),
        ("onnx:x.onnx", {"std": "1,0,1"}, "one or three"),
        ("onnx:x.onnx", {"mean": "1,2"}, "one or three"),
    ],
)
def test_bad_options_are_refused(text: str, options: dict[str, str], message: str) -> None:
    with pytest.raises(EncoderError, match=message):
        EncoderSpec.parse(text, **options)


def test_an_encoder_without_a_size_or_pooling_is_refused(tmp_path: Path) -> None:
    path = export_encoder(tmp_path / "e.onnx")
    proto = onnx.load(str(path))
    for dim in proto.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_param = "side"
    onnx.save(proto, str(path))
    with pytest.raises(EncoderError, match="encoder-size"):
        EncoderSpec.parse(f"onnx:{path}").resolve()
    assert EncoderSpec.parse(f"onnx:{path}", size="32x32").resolve().preprocessing.height == 32
    with pytest.raises(EncoderError, match="pool its feature map"):
        flatten_features(np.zeros((2, 16, 2, 2), np.float32))


# -- the run --------------------------------------------------------------------------


def test_results_have_the_pipeline_shape(run: tuple[RunConfig, dict[str, Any]]) -> None:
    cfg, results = run
    assert results["labels"] == list(LABELS)
    assert set(results["models"]) == {"lstm", "mean_pool", "svm"}
    for name, entry in results["models"].items():
        assert 0.0 <= entry["test"]["accuracy"] <= 1.0, name
        assert entry["test"]["count"] == results["split_sizes"]["test"], name
        assert entry["parameters"] > 0, name
    assert len(results["models"]["lstm"]["history"]["val_accuracy"]) == 2
    assert "shuffled" in results["models"]["lstm"]["extra"]
    assert (results["encoder"], results["motion"]) == ("onnx:tiny_encoder.onnx", False)
    assert results["geometry"] == {"num_frames": T, "height": SIDE, "width": SIDE}
    saved = json.loads((cfg.checkpoints / "results.json").read_text())
    assert saved["models"]["lstm"]["test"] == results["models"]["lstm"]["test"]


def test_the_report_is_written_the_same_way(run: tuple[RunConfig, dict[str, Any]]) -> None:
    cfg, results = run
    write_run_report(cfg, onnx_accuracy=results["onnx_test_accuracy"])
    doc = json.loads((cfg.out / "report.json").read_text())
    assert set(doc["models"]) == {"lstm", "mean_pool", "svm"}
    assert doc["encoder"] == "onnx:tiny_encoder.onnx"


def test_the_composed_file_keeps_the_contract(
    run: tuple[RunConfig, dict[str, Any]], encoder_file: Path
) -> None:
    cfg, _ = run
    path = cfg.out / "vidlstm.onnx"
    proto = onnx.load(str(path), load_external_data=False)
    (graph_input,) = proto.graph.input
    (output,) = proto.graph.output
    tensor = graph_input.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    assert (graph_input.name, tensor.elem_type) == ("frames", onnx.TensorProto.UINT8)
    assert dims[2:] == [SIDE, SIDE, 3] and all(isinstance(d, str) for d in dims[:2])
    assert (output.name, output.type.tensor_type.elem_type) == (
        "probabilities",
        onnx.TensorProto.FLOAT,
    )
    assert len(output.type.tensor_type.shape.dim) == 2
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    meta = read_metadata(path)
    arch = json.loads(meta["architecture"])
    assert arch["encoder"] == "onnx:tiny_encoder.onnx"
    assert arch["encoder_sha256"] == hashlib.sha256(encoder_file.read_bytes()).hexdigest()
    assert (arch["temporal"], arch["motion"], arch["bidirectional"]) == ("lstm", False, True)
    assert (meta["num_frames"], meta["height"], meta["width"]) == (str(T), str(SIDE), str(SIDE))
    assert json.loads(meta["labels"]) == list(LABELS)
    assert "test_accuracy" in json.loads(meta["metrics"])
    baseline = read_metadata(cfg.checkpoints / "mean_pool.onnx")
    assert json.loads(baseline["architecture"])["temporal"] == "mean_pool"


def test_the_composed_file_matches_encoder_then_head(
    run: tuple[RunConfig, dict[str, Any]], info: EncoderInfo
) -> None:
    cfg, _ = run
    head = load_head(cfg.checkpoints / "lstm_head.pt")
    worst = verify_composed(
        cfg.out / "vidlstm.onnx", info, head, lengths=(1, T, 9), batch_sizes=(1, 2, 5), seed=7
    )
    assert worst <= 1e-4


def test_a_composition_that_differs_is_refused(
    monkeypatch: pytest.MonkeyPatch, info: EncoderInfo, tmp_path: Path
) -> None:
    head = TemporalHead(HeadConfig(16, 2)).eval()
    exported = compose_mod.head_graph

    def other_head(module: TemporalHead, opset: int) -> onnx.ModelProto:
        changed = TemporalHead(module.config).eval()
        changed.load_state_dict(module.state_dict())
        with torch.no_grad():
            changed.linear.bias[:1].add_(0.5)  # one class: softmax ignores a shift of all
        return exported(changed, opset)

    monkeypatch.setattr(compose_mod, "head_graph", other_head)
    with (
        pytest.raises(ExportError, match="differs from encoder"),
        staged_composition(info, head, directory=tmp_path, lengths=(T,)),
    ):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("opset", "nhwc", "options"),
    [(11, False, {}), (18, True, {"value_range": "0-255", "channels": "bgr", "mean": "100"})],
)
def test_other_opsets_and_layouts_compose(
    tmp_path: Path, opset: int, nhwc: bool, options: dict[str, str]
) -> None:
    path = export_encoder(tmp_path / "e.onnx", opset=opset, nhwc=nhwc)
    encoder = EncoderSpec.parse(f"onnx:{path}", **options).resolve()
    for arch in ("lstm", "mean_pool"):
        head = TemporalHead(HeadConfig(16, 3, arch=arch, bidirectional=False)).eval()
        with staged_composition(encoder, head, directory=tmp_path, lengths=(1, 3)) as (_, p):
            opsets = [(o.domain, o.version) for o in onnx.load(str(p)).opset_import]
            assert opsets == [("", max(opset, 13))]


# -- features -------------------------------------------------------------------------


class InterruptedRunError(Exception):
    pass


class CountingEncoder(OnnxEncoder):
    """Counts its calls; after ``fail_after`` of them it raises (an interrupted run)."""

    calls = 0
    fail_after: int | None = None

    def encode(self, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise InterruptedRunError
        self.calls += 1
        return super().encode(frames)


def features_of(
    folder: Path, encoder: OnnxEncoder, cache_dir: Path, flips: tuple[Flip, ...] = (PLAIN,)
) -> FrameFeatures:
    """The features of every file under ``folder``, decoded at the run's geometry."""
    geometry = (3 * T, SIDE, SIDE, max(2, T // 2))
    features, _ = decode_features(
        folder, scan(folder), geometry, encoder, cache_dir=cache_dir, flips=flips,
        workers=1, progress=False,
    )  # fmt: skip
    return features


def test_features_are_reused_without_the_encoder(
    run: tuple[RunConfig, dict[str, Any]],
    folder: Path,
    info: EncoderInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg, _ = run
    data = dataset(cfg)

    def refuse(self: OnnxEncoder, frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        raise AssertionError("the encoder ran although its features are cached")

    monkeypatch.setattr(OnnxEncoder, "encode", refuse)
    flips = allowed_flips(default_config(LABELS, num_frames=T))
    assert set(flips) == {PLAIN, Flip(horizontal=True), Flip(vertical=True), Flip(True, True)}
    cached = features_of(folder, OnnxEncoder(info), cfg.cache_dir, tuple(reversed(flips)))
    n = len(data.files)
    assert set(cached.views) == set(flips)
    assert all(v.shape == (n, 3 * T, 16) for v in cached.views.values())
    # The mirrored frames' features are their own, not the plain ones'.
    rows = data.splits["train"]
    assert not np.allclose(cached.views[PLAIN][rows], cached.views[Flip(True)][rows])
    # The cache holds features only: no decoded pixels of these files at the encoder's size.
    assert not list(cfg.cache_dir.glob("features/*.partial.npy"))


def test_an_interrupted_extraction_resumes(
    folder: Path, info: EncoderInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_mod, "SYNC_EVERY", 3)
    n = len(scan(folder))
    first = CountingEncoder(info, providers=(CPU,))
    first.fail_after = 4  # files 0-3 encoded, 0-2 made durable and journalled
    with pytest.raises(InterruptedRunError):
        features_of(folder, first, tmp_path / "a")
    second = CountingEncoder(info, providers=(CPU,))
    resumed = features_of(folder, second, tmp_path / "a")
    assert second.calls == n - 3
    whole = features_of(folder, OnnxEncoder(info, providers=(CPU,)), tmp_path / "b")
    np.testing.assert_array_equal(resumed.views[PLAIN][:], whole.views[PLAIN][:])


# -- serving --------------------------------------------------------------------------


async def test_the_composed_file_serves(
    run: tuple[RunConfig, dict[str, Any]], folder: Path, tmp_path: Path
) -> None:
    composed = run[0].out / "vidlstm.onnx"
    model = load_model(composed)
    assert model.info.labels == LABELS and model.info.clip_shape == (T, SIDE, SIDE, 3)
    app = create_app(make_test_settings(composed, tmp_path))
    video = (folder / "move_right" / "0.mp4").read_bytes()
    async with asgi_client(app) as client:
        response = await client.post(
            "/classify", content=video, headers={"Content-Type": "video/mp4"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == set(LABELS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["top"][0]["label"] in LABELS
