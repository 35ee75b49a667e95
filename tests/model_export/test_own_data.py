"""A user's own folder, UCF101-style, end to end through the command line: grouped clips,
official split lists, a frozen encoder made from a checkpoint, resume, and the result
served over HTTP.

The folder comes from :mod:`model_export.data.ucf_like` (real AVI files, small).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_export.checkpoint import read_results, save_checkpoint
from model_export.cli import main
from model_export.data.ucf_like import CLASSES as CLASS_NAMES
from model_export.data.ucf_like import TEST_GROUPS, generate, hash_seed
from model_export.nets.classifier import ModelConfig, build_model
from model_export.onnx_encoder_run.encoder_file import export_encoder_file
from service.app import create_app
from tests.conftest import make_test_settings
from tests.support.serving import asgi_client

SIDE, T, CLASSES, GROUPS = 32, 4, 4, 10


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    generate(root / "UCF", classes=CLASSES, groups=GROUPS, clips=1, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen encoder file from a (fresh) checkpoint of the built-in CNN, at 32 x 32."""
    root = tmp_path_factory.mktemp("encoder")
    model = build_model(ModelConfig(num_classes=2, height=SIDE, width=SIDE, motion=False))
    save_checkpoint(root / "cnn.pt", model)
    return export_encoder_file(root / "cnn.pt", root / "cnn.onnx")


def _args(ucf: Path, encoder: Path, out: Path) -> list[str]:
    lists = ucf / "ucfTrainTestlist"
    return [
        "all", "--data", str(ucf / "UCF"), "--out", str(out), "--cache", str(out / "cache"),
        "--split-files", str(lists / "trainlist01.txt"), str(lists / "testlist01.txt"),
        "--encoder", f"onnx:{encoder}", "--epochs", "3", "--frames", str(T),
        "--workers", "1", "--no-progress",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, ucf: Path, encoder: Path
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("run") / "models"
    assert main(_args(ucf, encoder, out)) == 0
    return out, read_results(out / "checkpoints" / "results.json")


def _listed(path: Path) -> set[str]:
    return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}


def test_the_official_lists_are_the_splits_and_no_group_straddles(
    run: tuple[Path, dict[str, Any]], ucf: Path
) -> None:
    out, results = run
    doc = json.loads((out / "splits.json").read_text())
    splits = {name: {e["path"] for e in entries} for name, entries in doc["splits"].items()}
    lists = ucf / "ucfTrainTestlist"
    assert splits["test"] == _listed(lists / "testlist01.txt")
    assert splits["train"] | splits["val"] == _listed(lists / "trainlist01.txt")
    assert splits["val"] and splits["train"]  # val carved out of the train list
    groups = {name: {e["group"] for e in entries} for name, entries in doc["splits"].items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not groups[a] & groups[b], (a, b)
    assert groups["test"] == {f"{g:02d}" for g in range(1, TEST_GROUPS + 1)}
    assert doc["group_pattern"] == r"_g(\d+)_"
    assert results["split_sizes"]["test"] == CLASSES * TEST_GROUPS


def test_the_cache_holds_features_not_pixels(run: tuple[Path, dict[str, Any]]) -> None:
    cache = run[0] / "cache"
    assert not list(cache.glob("*.npy"))  # no decoded-pixel cache of the training folder
    (features,) = cache.glob("features/*.plain.npy")  # user labels: no mirrors
    assert features.stat().st_size < 4 * 3 * T * 200 * CLASSES * GROUPS


def test_resume_of_a_finished_run_gives_the_same_model(
    run: tuple[Path, dict[str, Any]], ucf: Path, encoder: Path
) -> None:
    out, results = run
    assert main([*_args(ucf, encoder, out), "--resume"]) == 0
    again = read_results(out / "checkpoints" / "results.json")
    for arch in ("lstm", "mean_pool"):
        first, second = results["models"][arch], again["models"][arch]
        assert second["test"] == first["test"]
        assert second["history"]["val_loss"] == first["history"]["val_loss"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cuda"], "no CUDA device"),
        (["--epochs", "4", "--resume"], "epochs"),
    ],
)
def test_refusals_are_messages_not_tracebacks(
    run: tuple[Path, dict[str, Any]],
    ucf: Path,
    encoder: Path,
    extra: list[str],
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    args = _args(ucf, encoder, run[0])
    args[args.index("--epochs") : args.index("--epochs") + 2] = []
    assert main([*args, *(extra if "--epochs" in extra else ["--epochs", "3", *extra])]) == 2
    assert message in caplog.text


def test_a_folder_without_labels_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clip.avi").write_bytes(b"not in a label folder")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o")]) == 2
    assert "DATA/<label>/" in caplog.text


async def test_the_model_classifies_the_folder_over_http(
    run: tuple[Path, dict[str, Any]], ucf: Path, tmp_path: Path
) -> None:
    out, results = run
    app = create_app(make_test_settings(out / "vidlstm.onnx", tmp_path))
    label = results["labels"][0]
    video = next((ucf / "UCF" / label).glob("*.avi")).read_bytes()
    async with asgi_client(app) as client:
        response = await client.post(
            "/classify", content=video, headers={"Content-Type": "video/x-msvideo"}
        )
    assert response.status_code == 200, response.text
    assert set(response.json()["probabilities"]) == set(results["labels"])


def test_every_group_has_its_own_scene() -> None:
    """Siblings share a scene; other groups, of the same class or not, do not."""
    seeds = {hash_seed(label, g) for label in CLASS_NAMES for g in range(1, 26)}
    assert len(seeds) == len(CLASS_NAMES) * 25
