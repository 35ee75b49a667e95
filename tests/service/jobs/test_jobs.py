"""Jobs over real HTTP: submit, poll, fetch; failures, cancel, idempotency, expiry, the
size cap, and a server killed mid-job that finishes the job after a restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE
from tests.conftest import MakeSettings
from tests.support import faults
from tests.support.media import H264_MP4, moving_square_frames, noise_frames, write_video
from tests.support.observe import descendants, run_service
from tests.support.serving import Served, serve_in_thread

RAW = {"Content-Type": "video/mp4"}


@pytest.fixture(scope="module")
def long_mp4(media: Path) -> Path:
    """6 s at 25 fps: three 2 s windows."""
    return write_video(media / "jobs-long.mp4", moving_square_frames(150, 96, 128), fmt=H264_MP4)


@pytest.fixture
def jobs_dir(tmp_path: Path) -> Path:
    return tmp_path / "jobs"


@pytest.fixture
def served(jobs_dir: Path, make_settings: MakeSettings) -> Iterator[Served]:
    settings = make_settings(jobs_dir=jobs_dir, decode_workers=2)
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as running:
        yield running


def submit(base_url: str, data: bytes, **kwargs: Any) -> httpx.Response:
    headers = {**RAW, **kwargs.pop("headers", {})}
    return httpx.post(f"{base_url}/jobs", content=data, headers=headers, timeout=60, **kwargs)


def poll(
    base_url: str, job_id: str, *, until: set[str], timeout: float = 60
) -> list[dict[str, Any]]:
    """Every body ``GET /jobs/{id}`` gave until its status is in ``until``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        reply = httpx.get(f"{base_url}/jobs/{job_id}", timeout=10)
        assert reply.status_code == 200, reply.text
        seen.append(reply.json())
        if seen[-1]["status"] in until:
            return seen
        assert time.monotonic() < deadline, f"job stuck: {seen[-1]}"
        time.sleep(0.05)


def assert_same_answer(job: dict[str, Any], direct: dict[str, Any]) -> None:
    """The same body but for the timings; probabilities equal to float32 rounding."""

    def close(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            assert set(a) == set(b), where
            for key in a:
                close(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list) and isinstance(b, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                close(x, y, f"{where}[{i}]")
        elif isinstance(a, float) and isinstance(b, float):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-7), where
        else:
            assert a == b, where

    drop = "timing_ms"
    close(
        {k: v for k, v in job.items() if k != drop},
        {k: v for k, v in direct.items() if k != drop},
        "",
    )


def test_a_job_gives_what_classify_gives(served: Served, long_mp4: Path) -> None:
    data = long_mp4.read_bytes()
    accepted = submit(served.base_url, data, params={"top_k": 2})
    job_id = accepted.json()["id"]
    seen = poll(served.base_url, job_id, until={"succeeded", "failed"})
    direct = httpx.post(
        f"{served.base_url}/classify",
        content=data,
        headers=RAW,
        params={"segments": "true", "top_k": 2},
        timeout=60,
    ).json()

    assert accepted.status_code == 202
    assert accepted.headers["location"] == f"/jobs/{job_id}"
    assert accepted.json()["status"] in {"queued", "running", "succeeded"}
    assert accepted.json()["expires_at"] is None
    final = seen[-1]
    assert final["status"] == "succeeded", final
    assert final["progress"]["fraction"] == 1.0
    assert final["progress"]["segments_done"] == final["progress"]["segments_total"] == 3
    fractions = [body["progress"]["fraction"] for body in seen]
    assert fractions == sorted(fractions), "progress went down"
    assert final["expires_at"] is not None
    assert_same_answer(final["result"], direct)
    assert len(final["result"]["segments"]) == 3
    assert final["result"]["timing_ms"]["upload"] > 0  # taken at submit, stored with the job


def test_a_corrupt_upload_fails_with_the_classify_problem(served: Served) -> None:
    garbage = b"this is not a video at all" * 50
    job_id = submit(served.base_url, garbage).json()["id"]
    final = poll(served.base_url, job_id, until={"succeeded", "failed"})[-1]
    direct = httpx.post(f"{served.base_url}/classify", content=garbage, headers=RAW)

    assert final["status"] == "failed"
    assert final["error"]["type"] == direct.json()["type"] == PROBLEM_BASE + "not-a-video"
    assert final["error"]["status"] == 415
    assert final["result"] is None


def test_a_decoder_crash_fails_the_job_not_the_server(served: Served, mp4: Path) -> None:
    job_id = submit(served.base_url, faults.CRASH + mp4.read_bytes()).json()["id"]
    final = poll(served.base_url, job_id, until={"succeeded", "failed"})[-1]
    after = submit(served.base_url, mp4.read_bytes()).json()["id"]

    assert final["error"]["type"] == PROBLEM_BASE + "decoder-crashed"
    assert poll(served.base_url, after, until={"succeeded", "failed"})[-1]["status"] == "succeeded"


def test_idempotent_resubmit(served: Served, mp4: Path, long_mp4: Path) -> None:
    key = {"Idempotency-Key": "upload-42"}
    first = submit(served.base_url, mp4.read_bytes(), headers=key)
    again = submit(served.base_url, mp4.read_bytes(), headers=key)
    other_bytes = submit(served.base_url, long_mp4.read_bytes(), headers=key)
    other_query = submit(served.base_url, mp4.read_bytes(), headers=key, params={"top_k": 1})
    listed = httpx.get(f"{served.base_url}/jobs").json()["jobs"]

    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert other_bytes.status_code == other_query.status_code == 422
    assert other_bytes.json()["type"] == PROBLEM_BASE + "idempotency-key-reused"
    assert [job["id"] for job in listed] == [first.json()["id"]]


def test_cancel_a_running_job_removes_its_upload(served: Served, jobs_dir: Path, mp4: Path) -> None:
    job_id = submit(served.base_url, faults.HANG + mp4.read_bytes()).json()["id"]
    poll(served.base_url, job_id, until={"running"})
    canceled = httpx.delete(f"{served.base_url}/jobs/{job_id}")
    time.sleep(0.5)
    later = httpx.get(f"{served.base_url}/jobs/{job_id}").json()
    direct = httpx.post(f"{served.base_url}/classify", content=mp4.read_bytes(), headers=RAW)
    deleted = httpx.delete(f"{served.base_url}/jobs/{job_id}")
    gone = httpx.get(f"{served.base_url}/jobs/{job_id}")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert later["status"] == "canceled"
    assert not list((jobs_dir / "uploads").iterdir())
    assert direct.status_code == 200
    assert deleted.status_code == 200
    assert gone.status_code == 404
    assert gone.json()["type"] == PROBLEM_BASE + "job-not-found"


def test_requests_are_served_while_a_job_decodes_and_its_timeout_fails_it(
    jobs_dir: Path, make_settings: MakeSettings, mp4: Path
) -> None:
    """A job holds one decode worker of two (a decode that hangs until the jobs' decode
    timeout); synchronous requests take the other meanwhile. The job then ends failed
    with the problem /classify gives for a decode timeout: never stuck running."""
    settings = make_settings(jobs_dir=jobs_dir, decode_workers=2, jobs_decode_timeout_s=4.0)
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        job_id = submit(served.base_url, faults.HANG + mp4.read_bytes()).json()["id"]
        poll(served.base_url, job_id, until={"running"})
        replies = [
            httpx.post(f"{served.base_url}/classify", content=mp4.read_bytes(), headers=RAW)
            for _ in range(3)
        ]
        during = httpx.get(f"{served.base_url}/jobs/{job_id}").json()["status"]
        final = poll(served.base_url, job_id, until={"succeeded", "failed"})[-1]

    assert [r.status_code for r in replies] == [200, 200, 200]
    assert during == "running", "the requests should have been answered during the job"
    assert final["status"] == "failed"
    assert final["error"]["type"] == PROBLEM_BASE + "decode-timeout"
    assert final["error"]["status"] == 504


def test_list_pages_and_filters(served: Served, mp4: Path) -> None:
    ids = [submit(served.base_url, mp4.read_bytes()).json()["id"] for _ in range(3)]
    for job_id in ids:
        poll(served.base_url, job_id, until={"succeeded"})
    first = httpx.get(f"{served.base_url}/jobs", params={"limit": 2}).json()
    second = httpx.get(
        f"{served.base_url}/jobs", params={"limit": 2, "page_token": first["next_page_token"]}
    ).json()
    failed = httpx.get(f"{served.base_url}/jobs", params={"status": "failed"}).json()

    assert [j["id"] for j in first["jobs"] + second["jobs"]] == ids
    assert second["next_page_token"] is None
    assert all(j["result"] is None for j in first["jobs"])  # pages stay small
    assert failed["jobs"] == []


def test_results_expire_and_are_swept(
    jobs_dir: Path, make_settings: MakeSettings, mp4: Path
) -> None:
    settings = make_settings(jobs_dir=jobs_dir, jobs_ttl_s=1.0)
    with serve_in_thread(create_app(settings)) as served:
        job_id = submit(served.base_url, mp4.read_bytes()).json()["id"]
        poll(served.base_url, job_id, until={"succeeded"})
        time.sleep(1.2)
        expired = httpx.get(f"{served.base_url}/jobs/{job_id}")
        deadline = time.monotonic() + 10
        while _rows(jobs_dir) and time.monotonic() < deadline:
            time.sleep(0.1)

    assert expired.status_code == 404
    assert _rows(jobs_dir) == 0, "the sweeper left the expired job"
    assert not list((jobs_dir / "uploads").iterdir())


def test_the_jobs_directory_has_a_size_cap(jobs_dir: Path, make_settings: MakeSettings) -> None:
    """Uploads held by open jobs (hung here: their uploads stay) count towards the cap:
    room for two such uploads and the database, not three."""
    video = (
        faults.HANG
        + write_video(
            jobs_dir.parent / "noise.mp4", noise_frames(50, 96, 128), fmt=H264_MP4
        ).read_bytes()
    )
    settings = make_settings(jobs_dir=jobs_dir, jobs_max_bytes=len(video) * 5 // 2)
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        replies = [submit(served.base_url, video) for _ in range(4)]
        held = sum(p.stat().st_size for p in (jobs_dir / "uploads").iterdir())

    statuses = [r.status_code for r in replies]
    assert statuses == [202, 202, 503, 503], statuses
    full = replies[-1]
    assert full.json()["type"] == PROBLEM_BASE + "jobs-full"
    assert int(full.headers["retry-after"]) > 0
    assert held <= settings.jobs_max_bytes


def test_jobs_are_off_without_a_directory(server: Served, mp4: Path) -> None:
    reply = submit(server.base_url, mp4.read_bytes())
    assert reply.status_code == 404
    assert reply.json()["type"] == PROBLEM_BASE + "jobs-disabled"


def test_a_killed_server_finishes_the_job_after_restart(
    tiny_model: Path, tmp_path: Path, long_mp4: Path
) -> None:
    """``kill -9`` mid-job; a new server on the same jobs directory requeues the job when
    its lease runs out and finishes it: one job, one result, two attempts."""
    jobs_dir = tmp_path / "jobs"
    env = {
        "VIDLSTM_JOBS_DIR": str(jobs_dir),
        "VIDLSTM_JOBS_LEASE_S": "1",
        "VIDLSTM_DECODE_WORKERS": "1",
        faults.DELAY_ENV: "30",
    }
    module = "tests.support.faulty_service"
    with run_service(tiny_model, tmp_path / "a", env, module=module) as first:
        job_id = submit(first.base_url, long_mp4.read_bytes()).json()["id"]
        poll(first.base_url, job_id, until={"running"})
        for pid in [first.pid, *descendants(first.pid)]:
            os.kill(pid, signal.SIGKILL)
        first.proc.wait(10)
    env[faults.DELAY_ENV] = "0"
    with run_service(tiny_model, tmp_path / "b", env, module=module) as second:
        final = poll(second.base_url, job_id, until={"succeeded", "failed"}, timeout=90)[-1]
        listed = httpx.get(f"{second.base_url}/jobs").json()["jobs"]
        direct = httpx.post(
            f"{second.base_url}/classify",
            content=long_mp4.read_bytes(),
            headers=RAW,
            params={"segments": "true"},
            timeout=60,
        ).json()

    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    assert [j["id"] for j in listed] == [job_id]
    assert_same_answer(final["result"], direct)
    assert not list((jobs_dir / "uploads").iterdir())


def test_concurrent_submits_with_one_key_make_one_job(served: Served, mp4: Path) -> None:
    data = mp4.read_bytes()
    replies: list[httpx.Response] = []

    def send() -> None:
        replies.append(submit(served.base_url, data, headers={"Idempotency-Key": "same"}))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [r.status_code for r in replies] == [202] * 4
    assert len({r.json()["id"] for r in replies}) == 1


def _rows(jobs_dir: Path) -> int:
    with sqlite3.connect(jobs_dir / "jobs.sqlite3") as db:
        count: int = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    return count


def test_with_api_keys_a_job_is_its_submitters(
    jobs_dir: Path, make_settings: MakeSettings, mp4: Path
) -> None:
    """Another key sees no job of this key's (404, not 403: not even that it exists), and
    an Idempotency-Key is the submitter's own."""
    settings = make_settings(jobs_dir=jobs_dir, api_keys="key-a,key-b")
    a, b = {"X-API-Key": "key-a"}, {"X-API-Key": "key-b"}
    with serve_in_thread(create_app(settings)) as served:
        url = served.base_url
        mine = submit(url, mp4.read_bytes(), headers={**a, "Idempotency-Key": "k"}).json()
        theirs = submit(url, mp4.read_bytes(), headers={**b, "Idempotency-Key": "k"}).json()
        seen_by_b = httpx.get(f"{url}/jobs/{mine['id']}", headers=b)
        canceled_by_b = httpx.delete(f"{url}/jobs/{mine['id']}", headers=b)
        listed_a = httpx.get(f"{url}/jobs", headers=a).json()["jobs"]
        listed_b = httpx.get(f"{url}/jobs", headers=b).json()["jobs"]
        no_key = httpx.get(f"{url}/jobs/{mine['id']}")
        seen_by_a = httpx.get(f"{url}/jobs/{mine['id']}", headers=a)

    assert mine["id"] != theirs["id"]
    assert seen_by_b.status_code == canceled_by_b.status_code == 404
    assert seen_by_b.json()["type"] == PROBLEM_BASE + "job-not-found"
    assert [j["id"] for j in listed_a] == [mine["id"]]
    assert [j["id"] for j in listed_b] == [theirs["id"]]
    assert no_key.status_code == 401
    assert seen_by_a.status_code == 200


def test_a_request_does_not_wait_for_a_job_still_decoding(
    jobs_dir: Path, make_settings: MakeSettings, mp4: Path
) -> None:
    """The batcher closes a lone request's batch at once even while a job holds the
    model: the job's clips come when its decode ends, maybe minutes later. A delay of
    3 s makes the difference plain (a batch that waited shows queue >= 3000 ms)."""
    settings = make_settings(jobs_dir=jobs_dir, decode_workers=2, max_delay_ms=3000.0)
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        job_id = submit(served.base_url, faults.HANG + mp4.read_bytes()).json()["id"]
        poll(served.base_url, job_id, until={"running"})
        reply = httpx.post(
            f"{served.base_url}/classify", content=mp4.read_bytes(), headers=RAW, timeout=30
        )
        httpx.delete(f"{served.base_url}/jobs/{job_id}")

    assert reply.status_code == 200
    assert reply.json()["timing_ms"]["queue"] < 1000
