"""Several serving processes on one port (``VIDLSTM_SERVER_PROCESSES``): how the work is
split, and a real ``python -m service`` with two processes under faults.

Drain on SIGTERM with two processes is in ``core/test_lifecycle.py`` (both shapes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from service.core.errors import PROBLEM_BASE
from service.core.setting_values import default_server_processes
from service.core.settings import Settings
from service.serving_process import child_settings, shares
from tests.support import REPO, faults
from tests.support.observe import children, free_port

RAW = {"Content-Type": "video/mp4"}
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


# -- how the work is split ----------------------------------------------------------


def test_shares_differ_by_at_most_one() -> None:
    assert shares(5, 2) == [3, 2]
    assert shares(2, 2) == [1, 1]
    assert shares(16, 4) == [4, 4, 4, 4]
    assert sum(shares(7, 3)) == 7


def test_each_process_gets_its_share_of_workers_and_admission(tmp_path: Path) -> None:
    settings = Settings(decode_workers=5, max_requests_in_flight=9, temp_dir=tmp_path)
    first, second = (child_settings(settings, i, 2) for i in range(2))
    assert (first.decode_workers, second.decode_workers) == (3, 2)
    assert first.max_requests_in_flight == second.max_requests_in_flight == 5
    assert first.max_batch_size == settings.max_batch_size  # the rest unchanged


def test_default_processes_come_from_the_workers(tmp_path: Path) -> None:
    assert [default_server_processes(n) for n in (1, 2, 7, 8, 16, 32)] == [1, 1, 1, 2, 4, 8]
    assert Settings(decode_workers=2, temp_dir=tmp_path).processes == 1
    assert Settings(decode_workers=16, temp_dir=tmp_path).processes == 4
    # Never more processes than workers: each needs one.
    assert Settings(decode_workers=2, server_processes=3, temp_dir=tmp_path).processes == 2


# -- a real service with two processes ----------------------------------------------------


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    base_url: str
    spool: Path
    log: Path

    @property
    def supervisor(self) -> int:
        """The supervisor's pid: the process started, or the one below ``unshare``."""
        if Path(str(self.proc.args[0])).name == "unshare":  # type: ignore[index]
            (pid,) = children(self.proc.pid)
            return pid
        return self.proc.pid

    def servers(self) -> list[int]:
        """The serving processes: the supervisor's children that have decode workers."""
        return [pid for pid in children(self.supervisor) if children(pid)]

    def lines(self) -> list[dict[str, object]]:
        text = self.log.read_text(errors="replace")
        return [json.loads(x) for x in text.splitlines() if x.startswith("{")]

    def wait_ready(self, processes: int, timeout_s: float = 60) -> None:
        """Until ``processes`` serving processes have warmed up since the last call."""
        deadline = time.monotonic() + timeout_s
        while sum(1 for e in self.lines() if e["msg"] == "ready") < processes:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the serving processes did not warm up"
            time.sleep(0.05)


def start(tiny_model: Path, work: Path, *, prefix: Sequence[str] = (), **env: str) -> Running:
    spool = work / "spool"
    spool.mkdir(exist_ok=True)
    port = free_port()
    log = work / "service.log"
    full_env = {
        **os.environ,
        "VIDLSTM_MODEL_PATH": str(tiny_model),
        "VIDLSTM_PORT": str(port),
        "VIDLSTM_TEMP_DIR": str(spool),
        "VIDLSTM_DECODE_WORKERS": "2",
        "VIDLSTM_SERVER_PROCESSES": "2",
        "VIDLSTM_INTRA_OP_THREADS": "1",
        "VIDLSTM_PROVIDERS": "cpu",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.support.faulty_service"],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=out,
        )
    return Running(proc, f"http://127.0.0.1:{port}", spool, log)


@pytest.fixture
def two(tiny_model: Path, tmp_path: Path) -> Iterator[Running]:
    running = start(tiny_model, tmp_path)
    try:
        running.wait_ready(2)
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(10)
        for pid in children(running.proc.pid):  # pragma: no cover - only if a test failed
            os.kill(pid, signal.SIGKILL)


def classify(base_url: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{base_url}/classify", content=data, headers=RAW, timeout=60)


def counter(base_url: str, name: str, **labels: str) -> float:
    """One sample of ``/metrics``, by name and labels."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        metric, _, value = line.rpartition(" ")
        head, _, rest = metric.partition("{")
        if head == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
            return float(value)
    return 0.0


def test_each_process_serves_alone_while_the_other_is_frozen(two: Running, mp4: Path) -> None:
    data = mp4.read_bytes()
    servers = two.servers()
    assert len(servers) == 2
    for frozen in servers:
        os.kill(frozen, signal.SIGSTOP)  # it cannot accept: the other one must
        try:
            answers = [classify(two.base_url, data) for _ in range(3)]
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert [a.status_code for a in answers] == [200] * 3
    served = {e.get("server_process") for e in two.lines() if e.get("path") == "/classify"}
    assert served == {0, 1}


def test_metrics_are_the_whole_service_whichever_process_answers(two: Running, mp4: Path) -> None:
    data = mp4.read_bytes()
    servers = two.servers()
    for frozen in servers:  # three requests through each process
        os.kill(frozen, signal.SIGSTOP)
        try:
            assert all(classify(two.base_url, data).status_code == 200 for _ in range(3))
        finally:
            os.kill(frozen, signal.SIGCONT)
    for frozen in servers:  # the scrape answered by each process in turn
        os.kill(frozen, signal.SIGSTOP)
        try:
            total = counter(
                two.base_url,
                "vidlstm_requests_total",
                route="/classify",
                method="POST",
                status="200",
            )
            clips = counter(two.base_url, "vidlstm_clips_inferred_total")
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert total == 6
        assert clips == 6
    text = httpx.get(f"{two.base_url}/metrics").text
    assert text.count("# TYPE vidlstm_requests_in_flight gauge") == 1
    assert "vidlstm_model_info{" in text


async def test_a_crashed_decoder_fails_only_its_request(two: Running, mp4: Path) -> None:
    data = mp4.read_bytes()
    async with httpx.AsyncClient(base_url=two.base_url, timeout=60) as client:
        good = [client.post("/classify", content=data, headers=RAW) for _ in range(4)]
        bad = client.post("/classify", content=faults.CRASH + data, headers=RAW)
        *answers, crashed = await asyncio.gather(*good, bad)
    assert [a.status_code for a in answers] == [200] * 4
    assert crashed.status_code == 422
    assert crashed.json()["type"] == PROBLEM_BASE + "decoder-crashed"


def test_a_killed_serving_process_is_replaced(two: Running, mp4: Path) -> None:
    data = mp4.read_bytes()
    victim, survivor = two.servers()
    os.kill(victim, signal.SIGKILL)
    # The survivor serves meanwhile; the replacement warms up and joins.
    assert classify(two.base_url, data).status_code == 200
    two.wait_ready(3)
    servers = two.servers()
    assert len(servers) == 2 and victim not in servers and survivor in servers
    assert all(classify(two.base_url, data).status_code == 200 for _ in range(4))
    logged = [e for e in two.lines() if "died by signal 9" in str(e["msg"])]
    assert len(logged) == 1 and logged[0]["level"] == "error"
    # The dead process's spool is swept by its replacement; nothing else is left.
    spools = sorted(p.name for p in two.spool.iterdir())
    assert len(spools) == 2 and not any(str(victim) in name for name in spools)
    assert two.proc.poll() is None


def test_a_dead_supervisor_takes_the_processes_with_it(two: Running) -> None:
    servers = two.servers()
    two.proc.kill()
    two.proc.wait(10)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in servers):
        assert time.monotonic() < deadline, "serving processes outlived their supervisor"
        time.sleep(0.1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{two.base_url}/health", timeout=2)


def test_a_bad_model_is_one_clear_error_with_two_processes(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    running = start(bogus, tmp_path)
    running.proc.wait(60)
    assert running.proc.returncode == 2
    (line,) = running.lines()
    assert line["level"] == "error" and "cannot start" in str(line["msg"])
    assert list(running.spool.iterdir()) == []


def _can_unshare() -> bool:
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _zombies_among(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                found.append(pid)
    return found


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare --pid (root, as in CI)")
def test_as_pid_1_it_reaps_the_workers_a_killed_process_leaves(
    tiny_model: Path, tmp_path: Path
) -> None:
    # A container's view: the supervisor is PID 1 of its own PID namespace, so the
    # decode workers of a serving process killed under it become its children.
    running = start(tiny_model, tmp_path, prefix=UNSHARE)
    try:
        running.wait_ready(2)
        supervisor = running.supervisor
        victim = running.servers()[0]
        workers = children(victim)
        assert workers
        os.kill(victim, signal.SIGKILL)
        running.wait_ready(3)
        time.sleep(1.5)  # the watch loop's next turns
        assert not _zombies_among(children(supervisor))
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        running.proc.kill()  # unshare: the namespace's processes die with its PID 1
        running.proc.wait(10)
