"""The benchmark harness in quick mode, so that ``make bench`` cannot rot.

Runs ``python -m bench --quick`` end to end (workloads, floor, the service and
both baseline servers over HTTP, report) against the tiny model and checks
the shape of ``latest.json``, never its numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import floor
from bench.__main__ import DEFAULT_GEOMETRY
from bench.client import Upload, run_raw
from bench.servers import python_path
from model_export.config import RunConfig
from service.pipeline.inference import Model, load_model
from tests.support import REPO
from tests.support.serving import Served

pytestmark = pytest.mark.slow


def test_quick_bench_writes_results_of_the_promised_shape(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env = {k: v for k, v in env.items() if not k.startswith("VIDLSTM_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--model",
            str(tiny_model),
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    doc = json.loads((out / "latest.json").read_text())
    assert set(doc["ratios"]) >= {
        "service_vs_floor",
        "service_vs_naive",
        "service_vs_idiomatic",
        "long_vs_short",
        "service_vs_litserve_style",
        "service_vs_litserve_style_c1_p50",
        "processes_vs_1_w1",
        "ingress_processes_vs_1",
        "bulk_local_vs_floor",
        "bulk_ray_vs_floor",
    }
    assert all(isinstance(v, float) for v in doc["ratios"].values())
    # The scale-up figures: the front's CPU per request for each server measured so.
    assert set(doc["front_cpu_ms"]) == {
        "service/w1/c8",
        "service-2p/w1/c8",
        "ingress-1p/tiny/c16",
        "ingress-2p/tiny/c16",
    }
    assert all(ms > 0 for ms in doc["front_cpu_ms"].values())
    assert doc["scale"]["ingress-2p"]["tiny_c16"]["errors"] == 0
    assert {"local", "ray", "local_w2"} <= set(doc["bulk"])
    assert doc["targets"]["bulk_local_w2_peak_rss_mb"]["value"] > 0
    c8 = doc["service"]["c8"]
    assert set(c8) >= {"videos_per_s", "p50_ms", "p99_ms", "errors"}
    assert c8["errors"] == 0
    assert isinstance(doc["peak_rss_mb"], float)
    assert doc["machine"]["cores_usable"] >= 1
    assert doc["load_average"]["start"] and doc["load_average"]["end"]
    assert {"w1", "w2", "w3"} <= set(doc["workloads"])
    table = (out / "latest.md").read_text()
    assert "| service | W1, 8 |" in table
    assert "| litserve-style | W1, 1 |" in table
    assert "service_vs_floor" in table


def test_raw_socket_client_gets_every_answer_over_kept_alive_connections(
    server: Served, mp4: Path, tmp_path: Path
) -> None:
    """The bench's main client: whole answers, the server's timings, errors counted."""
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    uploads = [Upload.of(mp4)] * 6 + [Upload.of(junk)]

    result = run_raw(server.base_url, uploads, concurrency=3)

    assert len(result.latencies_s) == 6
    assert result.errors == 1
    assert " 415 " in result.error_samples[0]  # not-a-video
    assert [set(t) >= {"upload", "decode", "total"} for t in result.server_timings] == [True] * 6


def test_the_untrained_stand_in_has_the_default_models_geometry() -> None:
    run = RunConfig()
    assert (run.num_frames, run.height, run.width) == DEFAULT_GEOMETRY


def test_servers_keep_the_callers_python_path_behind_the_repository() -> None:
    assert python_path(None) == str(REPO)
    assert python_path("/opt/site:/x") == f"{REPO}{os.pathsep}/opt/site:/x"


def test_the_floor_opens_its_sessions_as_the_service_did(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TF32 changes what a GPU computes and how fast: the floor must not differ from the service.
    opened: list[bool] = []

    def spy(path: Path, **options: Any) -> Model:
        opened.append(options["cuda_tf32"])
        return load_model(path, **options)

    monkeypatch.setattr(floor, "load_model", spy)
    model = load_model(tiny_model)
    h, w = model.info.height, model.info.width
    clips = np.zeros((2, model.info.num_frames, h, w, 3), dtype=np.uint8)
    for tf32 in (True, False):
        rate = floor.best_infer_rate(model, tiny_model, clips, batch=2, cores=1, cuda_tf32=tf32)
        assert rate > 0
    assert opened == [True, False]
