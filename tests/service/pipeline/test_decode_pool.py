"""A decode worker that crashes or hangs fails only its own request; the pool recovers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE
from service.core.settings import Settings
from service.media.decode_job import DecodeJob
from service.media.probe import Limits
from service.pipeline import clip_block
from service.pipeline.decode_pool import DecodePool
from tests.conftest import MakeSettings, make_test_settings
from tests.support import faults
from tests.support.serving import Served, serve_in_thread

DECODE_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def faulty(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_test_settings(
        tiny_model,
        tmp_path_factory.mktemp("spool"),
        decode_workers=2,
        decode_timeout_s=DECODE_TIMEOUT_S,
    )
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        yield served


def post(served: Served, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{served.base_url}/classify",
        content=data,
        headers={"Content-Type": "video/mp4"},
        timeout=30,
    )


def restarts(served: Served, cause: str) -> float:
    text = httpx.get(f"{served.base_url}/metrics").text
    match = re.search(
        rf'^vidlstm_decode_worker_restarts_total\{{cause="{cause}"\}} (\S+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize(
    ("marker", "signal_name"), [(faults.CRASH, "SIGKILL"), (faults.SEGFAULT, "SIGSEGV")]
)
async def test_crashed_worker_fails_only_its_request(
    faulty: Served, mp4: Path, marker: bytes, signal_name: str
) -> None:
    before = restarts(faulty, "crash")
    async with httpx.AsyncClient(base_url=faulty.base_url, timeout=30) as client:
        headers = {"Content-Type": "video/mp4"}
        crash, *others = await asyncio.gather(
            client.post("/classify", content=marker + b"\0" * 1000, headers=headers),
            *(
                client.post("/classify", content=mp4.read_bytes(), headers=headers)
                for _ in range(3)
            ),
        )
        after_crash = await client.post("/classify", content=mp4.read_bytes(), headers=headers)

    assert crash.status_code == 422
    assert crash.headers["content-type"] == "application/problem+json"
    assert crash.json()["type"] == PROBLEM_BASE + "decoder-crashed"
    assert signal_name in crash.json()["detail"]
    assert [r.status_code for r in others] == [200, 200, 200]
    assert after_crash.status_code == 200
    assert restarts(faulty, "crash") == before + 1
    assert list(faulty.runtime.spool.path.iterdir()) == []
    assert clip_block.leftovers(clip_block.SHM_DIR) == []  # nor a block in /dev/shm


def test_hanging_decode_times_out(faulty: Served, mp4: Path) -> None:
    before = restarts(faulty, "timeout")
    hung = post(faulty, faults.HANG + b"\0" * 1000)

    assert hung.status_code == 504
    assert hung.json()["type"] == PROBLEM_BASE + "decode-timeout"
    assert restarts(faulty, "timeout") == before + 1
    # Both workers are usable again.
    assert [post(faulty, mp4.read_bytes()).status_code for _ in range(3)] == [200] * 3
    assert httpx.get(f"{faulty.base_url}/health").status_code == 200
    assert clip_block.leftovers(clip_block.SHM_DIR) == []


def test_unexpected_decoder_error_is_415_without_internals(faulty: Served, mp4: Path) -> None:
    response = post(faulty, faults.RAISE + b"\0" * 1000)

    assert response.status_code == 415
    assert response.json()["type"] == PROBLEM_BASE + "decode-failed"
    assert "secret" not in response.text
    assert post(faulty, mp4.read_bytes()).status_code == 200


def test_fault_hook_is_code_not_a_setting(make_settings: MakeSettings) -> None:
    """No environment variable can make a server import and run a module by name."""
    assert not [name for name in Settings.model_fields if "hook" in name]
    assert create_app(make_settings()).state.runtime.decode_pool._hook is None


def spawned_children() -> set[int]:
    """Our child processes started by multiprocessing's spawn (decode workers)."""
    pid = os.getpid()
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.add(int(child))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
async def test_worker_killed_while_idle_is_replaced(mp4: Path) -> None:
    """pebble gives up on a pool whose idle worker dies; the next decode still works."""
    causes: list[str] = []
    pool = DecodePool(workers=2, timeout_s=10, on_restart=causes.append)
    before = spawned_children()
    pool.start()
    try:
        await pool.warm_up()
        victim = min(spawned_children() - before)
        os.kill(victim, signal.SIGKILL)
        await asyncio.sleep(0.5)  # let pebble notice

        job = DecodeJob(num_frames=8, height=32, width=32, limits=Limits())
        decoded, _ = await pool.decode(mp4, job)
    finally:
        await asyncio.to_thread(pool.close)

    assert decoded.clip.shape == (8, 32, 32, 3)
    assert causes == ["pool"]


@pytest.mark.parametrize(
    ("queue_per_worker", "max_wait_s", "admitted"),
    [
        (None, None, 50),  # unbounded: every decode is admitted
        (0, None, 2),  # only while a worker is free
        (1, None, 4),  # one waiting per worker
        (3, None, 8),
        (None, 0.25, 7),  # waiting / workers * 0.1 s <= 0.25 s: up to 5 waiting
        (1, 0.05, 3),  # the tighter of the two bounds wins
    ],
)
def test_admission_bounds_the_decode_queue(
    queue_per_worker: int | None, max_wait_s: float | None, admitted: int
) -> None:
    pool = DecodePool(
        workers=2, timeout_s=1.0, queue_per_worker=queue_per_worker, max_wait_s=max_wait_s
    )
    pool._decode_s = 0.1  # recent decodes took 100 ms each
    while not pool.full and pool.pending < 50:
        pool.pending += 1  # what decode() does for each admitted request

    assert pool.pending == admitted


def test_a_lone_decode_takes_the_idle_core_and_a_busy_pool_does_not() -> None:
    """With a worker no other decode holds, a decode samples in halves (two cores, the
    same frames); once every worker has a decode, each gets one core."""
    job = DecodeJob(num_frames=4, height=32, width=32, limits=Limits())
    pool = DecodePool(workers=2, timeout_s=5)
    assert pool.with_spare_core(job) == (DecodeJob(4, 32, 32, Limits(), halves=True), True)
    pool.pending = 1
    assert pool.with_spare_core(job) == (job, False)
    pool.pending = 0
    never = DecodeJob(4, 32, 32, Limits(), halves=False)
    assert pool.with_spare_core(never) == (never, True)  # the caller's word stands
    assert DecodePool(workers=1, timeout_s=5).with_spare_core(job) == (job, False)
