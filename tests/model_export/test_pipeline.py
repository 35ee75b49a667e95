"""The whole command on a small user folder: train, export, verify, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from model_export.cli import main
from model_export.evaluation.scores import accuracy_interval
from model_export.export import read_metadata
from tests.support.media import sliding_square_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    data = sliding_square_folder(root / "data")
    (data / "slide_left" / "corrupt.mp4").write_bytes(b"\x00\x01garbage" * 100)
    (data / "slide_right" / "readme.txt").write_text("not a video")
    args = ["all", "--data", str(data), "--out", str(root / "models"), "--cache"]
    args += [str(root / "cache"), "--epochs", "1", "--frames", "4", "--height", "32"]
    args += ["--width", "32", "--workers", "1", "--no-progress", "--motion", "off"]
    assert main(args) == 0
    return root / "models"


def test_report_json_has_the_agreed_shape(run: Path) -> None:
    doc = json.loads((run / "report.json").read_text())
    assert set(doc["models"]) == {"lstm", "mean_pool", "svm"}
    for name, model in doc["models"].items():
        assert 0.0 <= model["test_accuracy"] <= 1.0, name
        assert 0.0 <= model["macro_f1"] <= 1.0, name
        low, high = model["test_accuracy_95ci"]
        assert low <= model["test_accuracy"] <= high, name
    assert doc["models"]["lstm"]["ms_per_clip"] > 0
    assert 0.0 <= doc["lstm_shuffled_frames_accuracy"] <= 1.0
    assert (doc["motion"], doc["encoder"]) == (False, "cnn")
    assert {s["path"] for s in doc["skipped_files"]} == {
        "slide_left/corrupt.mp4",
        "slide_right/readme.txt",
    }


def test_report_markdown_and_plots(run: Path) -> None:
    text = (run / "report.md").read_text()
    for png in ("comparison", "training_curves", "confusion_lstm", "confusion_svm"):
        assert (run / "plots" / f"{png}.png").stat().st_size > 1000
        assert f"plots/{png}.png" in text
    assert "slide_left/corrupt.mp4" in text


def test_exported_model_serves_the_user_labels(run: Path) -> None:
    meta = read_metadata(run / "vidlstm.onnx")
    assert json.loads(meta["labels"]) == ["slide_left", "slide_right"]
    assert (meta["num_frames"], meta["height"], meta["width"]) == ("4", "32", "32")
    assert "test_accuracy" in json.loads(meta["metrics"])
    assert json.loads(meta["architecture"])["motion"] is False
    session = ort.InferenceSession(str(run / "vidlstm.onnx"), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"frames": np.zeros((2, 4, 32, 32, 3), np.uint8)})
    assert probs.shape == (2, 2)


def test_accuracy_interval_is_wilsons() -> None:
    # 10 of 10 right: the 95% Wilson interval's lower end is 0.722 (not 1.0 as the
    # normal approximation would say); the shipped model's 176 of 184: 0.917-0.978.
    low, high = accuracy_interval(1.0, 10)
    assert (round(low, 3), high) == (0.722, 1.0)
    low, high = accuracy_interval(0.0, 10)
    assert (low, round(high, 3)) == (0.0, 0.278)
    low, high = accuracy_interval(176 / 184, 184)
    assert (round(low, 3), round(high, 3)) == (0.917, 0.978)
