"""``python -m bulk`` end to end: a folder of real clips and broken files, both engines,
every row checked against what ``POST /classify`` answers for the same bytes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from bulk import local
from bulk.classifier import JobOptions, bulk_settings
from bulk.sources import SourceError, expand
from bulk.table import OK, UNREADABLE, PartWriter, done_paths
from service.app import create_app
from service.core.errors import PROBLEM_BASE
from service.core.settings import Settings
from tests.support import REPO, faults
from tests.support.hostile.files import FILE_CASES
from tests.support.serving import serve_in_thread

GOOD = ("h264.mp4", "vp9.webm", "mpeg4.avi", "mjpeg.avi", "h264.mov", "mpeg2.ts")
BAD = ("zero-bytes", "truncated-moov-at-end", "text-as-mp4", "mjpeg-claims-16000x16000")
# Compared with the service: everything but how long it took.
TIMING = ["elapsed_ms"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good clips in six codecs and containers (one in a subfolder), four broken files,
    and a file that is no video by its name (left out when the folder is searched)."""
    root = tmp_path_factory.mktemp("archive")
    scratch = tmp_path_factory.mktemp("scratch")
    (root / "nested").mkdir()
    cases = {case.name: case for case in FILE_CASES}
    for i, name in enumerate(GOOD + BAD):
        case = cases[name]
        folder = root / "nested" if i == 0 else root
        stem = name.replace(".", "-")
        (folder / f"{stem}{Path(case.filename).suffix}").write_bytes(case.make(scratch))
    (root / "notes.md").write_text("not a video\n")
    return root


def service_settings(model: Path, temp_dir: Path) -> Settings:
    """The service's defaults, as bulk runs them (one decode worker, the CPU)."""
    return Settings(model_path=model, temp_dir=temp_dir, decode_workers=1, providers=("cpu",))


@pytest.fixture(scope="module")
def answers(
    archive: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, dict[str, Any]]]:
    """What ``POST /classify`` says of each file: ``(status, body)``, the status ``ok``
    or the problem's slug."""
    spool = tmp_path_factory.mktemp("spool")
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    with serve_in_thread(create_app(service_settings(tiny_model, spool))) as served:
        for path in expand([archive]):
            response = httpx.post(
                f"{served.base_url}/classify?top_k=3&segments=true",
                content=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
                timeout=60,
            )
            body = response.json()
            if response.status_code == 200:
                out[str(path)] = (OK, body)
            else:
                out[str(path)] = (body["type"].removeprefix(PROBLEM_BASE), body)
    return out


def run_bulk(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDLSTM_")}
    return subprocess.run(
        [sys.executable, "-m", "bulk", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def table(out: Path) -> pd.DataFrame:
    frame = pd.read_parquet(out)
    return frame.sort_values("path").reset_index(drop=True)


def check_against_service(
    frame: pd.DataFrame, answers: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    assert sorted(frame["path"]) == sorted(answers)  # one row per input, nothing else
    for row in frame.itertuples():
        status, body = answers[row.path]
        assert row.status == status, (row.path, row.error)
        assert row.bytes == Path(row.path).stat().st_size
        if status != OK:
            assert row.error and pd.isna(row.label)
            continue
        assert row.label == body["top"][0]["label"]
        assert [t["label"] for t in row.top] == [t["label"] for t in body["top"]]
        probabilities = dict(row.probabilities)
        assert probabilities.keys() == body["probabilities"].keys()
        for label, p in body["probabilities"].items():
            assert probabilities[label] == pytest.approx(p, abs=1e-5)
        assert [(s["start_s"], s["end_s"]) for s in row.segments] == [
            (s["start_s"], s["end_s"]) for s in body["segments"]
        ]
        assert [s["top"][0]["label"] for s in row.segments] == [
            s["top"][0]["label"] for s in body["segments"]
        ]
        assert row.duration_s == body["video"]["duration_s"]
        assert row.frames_used == body["video"]["frames_used"]
        assert (row.model_name, row.model_version) == tuple(body["model"].values())


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_every_file_gets_the_row_the_service_would_answer(
    engine: str,
    archive: Path,
    tiny_model: Path,
    tmp_path: Path,
    answers: dict[str, tuple[str, dict[str, Any]]],
) -> None:
    out = tmp_path / "out.parquet"
    args = [str(archive), "--out", str(out), "--model", str(tiny_model), "--engine", engine]
    done = run_bulk(*args, "--workers", "2", "--providers", "cpu", "--top-k", "3", "--segments")
    assert done.returncode == 0, done.stderr[-3000:]
    frame = table(out)
    check_against_service(frame, answers)
    assert set(frame["status"]) >= {OK, "no-file", "not-a-video", "frame-too-large"}
    summary = json.loads(done.stderr.strip().splitlines()[-1])
    assert summary["msg"].startswith(f"{len(answers)} rows in ")


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_resume_skips_what_is_done(
    engine: str,
    archive: Path,
    tiny_model: Path,
    tmp_path: Path,
    answers: dict[str, tuple[str, Any]],
) -> None:
    listing = tmp_path / "first.txt"
    first = sorted(answers)[:4]
    listing.write_text("# the first four\n" + "\n".join(first) + "\n")
    out = tmp_path / "out.parquet"
    common = ["--out", str(out), "--model", str(tiny_model), "--providers", "cpu"]
    assert run_bulk(str(listing), *common).returncode == 0
    assert done_paths(out) == set(first)

    refused = run_bulk(str(archive), *common)
    assert refused.returncode == 1  # results in the way, no --resume
    assert "--resume" in refused.stderr

    resumed = run_bulk(str(archive), *common, "--resume", "--engine", engine)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(answers)} files, 4 done before, {len(answers) - 4} to classify" in resumed.stderr
    frame = table(out)
    assert sorted(frame["path"]) == sorted(answers)  # each once

    again = run_bulk(str(archive), *common, "--resume", "--engine", engine)
    assert again.returncode == 0
    assert f"{len(answers)} files, {len(answers)} done before, 0 to classify" in again.stderr


def test_a_part_cut_short_is_set_aside_and_its_files_done_again(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    writer = PartWriter(out, rows=2)
    for name in ("a.mp4", "b.mp4", "c.mp4", "d.mp4"):
        writer.add({"path": name, "status": OK, "model_name": "m", "model_version": "1"})
    parts = sorted(out.glob("*.parquet"))
    assert len(parts) == 2
    data = parts[1].read_bytes()
    parts[1].write_bytes(data[: len(data) // 2])  # as a killed writer would leave it
    assert done_paths(out) == {"a.mp4", "b.mp4"}
    assert parts[1].with_suffix(".broken").exists() and not parts[1].exists()


def test_a_killed_job_resumed_gives_the_table_of_one_run(
    archive: Path, tiny_model: Path, tmp_path: Path
) -> None:
    many = tmp_path / "many"
    many.mkdir()
    source = next(p for p in expand([archive]) if p.name.startswith("mpeg4"))
    for i in range(60):
        shutil.copyfile(source, many / f"clip-{i:02d}{source.suffix}")
    common = ["--model", str(tiny_model), "--providers", "cpu", "--part-rows", "4"]
    whole = tmp_path / "whole.parquet"
    assert run_bulk(str(many), "--out", str(whole), *common).returncode == 0

    out = tmp_path / "out.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDLSTM_")}
    job = subprocess.Popen(
        [sys.executable, "-m", "bulk", str(many), "--out", str(out), *common],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.parquet"))) < 2:
        assert job.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)  # the job and its decode workers, mid-run
    job.wait(10)
    assert 0 < len(done_paths(out)) < 60

    resumed = run_bulk(str(many), "--out", str(out), *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    pd.testing.assert_frame_equal(
        table(out).drop(columns=TIMING), table(whole).drop(columns=TIMING)
    )


def test_a_crashing_decoder_fails_only_its_file(
    archive: Path, tiny_model: Path, tmp_path: Path
) -> None:
    good = next(p for p in expand([archive]) if p.name == "h264-mp4.mp4")
    crash = tmp_path / "crash.mp4"
    crash.write_bytes(faults.CRASH + good.read_bytes())
    out = tmp_path / "out.parquet"
    settings = bulk_settings(tiny_model, workers=2, providers=("cpu",), temp_dir=tmp_path)
    options = JobOptions(top_k=3)
    statuses = local.run([good, crash, good], settings, out, options, decode_hook=faults.inject)
    assert statuses == {OK: 2, "decoder-crashed": 1}
    frame = table(out)
    assert frame.set_index("path").loc[str(crash), "status"] == "decoder-crashed"


def test_a_missing_file_in_a_list_is_a_row_and_a_bad_source_stops_the_job(
    tiny_model: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "paths.list"
    listing.write_text("gone.mp4\n")
    out = tmp_path / "out.parquet"
    common = ["--out", str(out), "--model", str(tiny_model), "--providers", "cpu"]
    done = run_bulk(str(listing), *common)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = table(out).itertuples()
    assert row.path == str(tmp_path / "gone.mp4") and row.status == UNREADABLE

    nowhere = run_bulk(str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2"))
    assert nowhere.returncode == 1 and "no such file or folder" in nowhere.stderr
    with pytest.raises(SourceError):
        expand([tmp_path / "nowhere"])


def test_a_model_that_does_not_load_stops_the_job(tmp_path: Path, archive: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    done = run_bulk(str(archive), "--out", str(tmp_path / "out"), "--model", str(bogus))
    assert done.returncode == 1
    assert "cannot run" in done.stderr and "Traceback" not in done.stderr
