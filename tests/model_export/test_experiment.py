"""The experiment on a small user folder: every model and motion setting, the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_export.cli import main
from model_export.evaluation.experiment_page import TITLES, Row, answer
from tests.support.media import sliding_square_folder


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("experiment")
    data = sliding_square_folder(root / "data")
    args = ["experiment", "--data", str(data), "--docs", str(root / "docs"), "--cache"]
    args += [str(root / "cache"), "--epochs", "1", "--frames", "4", "--height", "32"]
    args += ["--width", "32", "--workers", "1", "--no-progress"]
    assert main(args) == 0
    return root / "docs"


def test_every_model_and_motion_setting_is_a_row(docs: Path) -> None:
    rows = json.loads((docs / "experiment.json").read_text())
    assert isinstance(rows, list)
    assert {tuple(sorted(r)) for r in rows} == {("accuracy", "model", "motion", "n", "split")}
    assert {(r["model"], r["motion"]) for r in rows} == {
        (model, motion) for model in TITLES for motion in (False, True)
    }
    assert {r["split"] for r in rows} == {"test"}  # a user folder has no generalisation set
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["n"] == rows[0]["n"] > 0


def test_the_page_has_the_tables_the_plot_and_the_answer(docs: Path) -> None:
    text = (docs / "experiment.md").read_text()
    assert "## Accuracy" in text
    assert "## What memory of order buys" in text
    assert "## The question, answered" in text
    assert (docs / "experiment" / "accuracy.png").stat().st_size > 1000


def test_the_answer_is_written_from_the_numbers() -> None:
    rows = [
        Row("lstm", False, "test", 0.9, 100),
        Row("mean_pool", False, "test", 0.25, 100),
        Row("svm", False, "test", 0.2, 100),
        Row("lstm_shuffled", False, "test", 0.3, 100),
    ]
    (text,) = answer(rows)
    assert "0.900" in text and "0.250" in text and "+65.0 points" in text
    assert "falls to 0.300" in text
