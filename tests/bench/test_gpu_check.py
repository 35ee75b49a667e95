"""The GPU check's code paths, rehearsed on the CPU so that the script cannot rot.

On a machine without a GPU the CUDA provider does not load: the check must say so
(and fail) rather than report CPU figures as the GPU's.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from bench.gpu_check import MAX_ABS_DIFF, check

pytestmark = pytest.mark.slow


def test_the_cpu_rehearsal_compares_and_measures(tiny_model: Path, tmp_path: Path) -> None:
    doc = check(tiny_model, tmp_path / "cache", "cpu", batches=(1, 4))
    assert doc["provider_runs"] is True
    assert doc["providers"][0] == "CPUExecutionProvider"
    assert doc["clips_compared"] == 8
    assert doc["max_abs_diff_vs_cpu"] <= MAX_ABS_DIFF
    assert doc["agrees_with_cpu"] is True
    assert set(doc["clips_per_s"]) == set(doc["cpu_clips_per_s"]) == {"1", "4"}
    assert all(rate > 0 for rate in doc["clips_per_s"].values())


def test_a_provider_that_does_not_load_fails_the_check(tiny_model: Path, tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        session = ort.InferenceSession(str(tiny_model), providers=["CUDAExecutionProvider"])
        if session.get_providers()[0] == "CUDAExecutionProvider":
            pytest.skip("CUDA really runs here")
    doc = check(tiny_model, tmp_path / "cache", "cuda")
    assert doc["provider_runs"] is False
    assert doc["providers"][0] == "CPUExecutionProvider"
    assert "clips_per_s" not in doc
