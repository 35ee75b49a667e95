"""Hostile uploads and requests against a real ``python -m service``: each gets its one
expected answer, and afterwards the server is healthy and holds nothing more than
before (file descriptors of the server and of its decode workers, spooled files,
worker memory).

The cases live in :mod:`tests.support.hostile` (files, protocol, outcomes); the count by
outcome is printed in the terminal summary.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import hostile
from tests.support.hostile import FILE_CASES, Expected, FileCase, ProtocolCase, Reply, Target
from tests.support.observe import (
    Holdings,
    ServiceProcess,
    descendants,
    peak_rss_mb,
    run_service,
    settled_holdings,
)

MiB = 1024 * 1024
UPLOAD_CAP = 2 * MiB
IDLE_TIMEOUT_S = 1.0
UPLOAD_TIMEOUT_S = 3.0
# A decode worker imports PyAV and numpy (~60 MB) and peaks near 80 MB on these cases.
# One that went past this decoded something the pixel cap forbids.
WORKER_PEAK_MB = 150.0
PROTOCOL_CASES = hostile.protocol_cases(UPLOAD_CAP)
PLAYLISTS = ("playlist-ssrf.m3u8", "playlist-local-file.m3u8", "playlist-list.ffconcat")

OUTCOMES: Counter[str] = Counter()
WORKER_PEAKS_MB: list[float] = []
pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")


class Canary:
    """A TCP listener that playlist cases point at; nothing may ever connect to it."""

    def __init__(self) -> None:
        self.sock = socket.create_server((hostile.CANARY_HOST, 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@dataclass
class Hostile:
    """The server under attack and what it held after warming up."""

    service: ServiceProcess
    target: Target
    baseline: Holdings
    scratch: Path
    canary: Canary


@pytest.fixture(scope="module")
def under_attack(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, mp4: Path
) -> Iterator[Hostile]:
    work = tmp_path_factory.mktemp("hostile")
    env = {
        "VIDLSTM_DECODE_WORKERS": "2",
        "VIDLSTM_MAX_UPLOAD_BYTES": str(UPLOAD_CAP),
        "VIDLSTM_UPLOAD_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
        "VIDLSTM_UPLOAD_TIMEOUT_S": str(UPLOAD_TIMEOUT_S),
        "VIDLSTM_DECODE_TIMEOUT_S": "20",
    }
    canary = Canary()
    with run_service(tiny_model, work, env) as service:
        target = Target("127.0.0.1", service.port, mp4.read_bytes())
        for _ in range(4):  # every worker has decoded once: lazy imports are done
            _post_file(target, "warm.mp4", target.video)
        baseline = settled_holdings(service.pid, service.temp_dir, service.holdings())
        scratch = work / "scratch"
        scratch.mkdir()
        yield Hostile(service, target, baseline, scratch, canary)
    canary.sock.close()


def _post_file(target: Target, filename: str, data: bytes) -> Reply:
    with httpx.Client(base_url=target.base_url, timeout=60) as client:
        response = client.post("/classify", files={"file": (filename, data, "video/mp4")})
    return Reply(response.status_code, response.headers.get("content-type", ""), response.content)


def check_unharmed(attack: Hostile) -> None:
    """Healthy, nothing in flight, and holding no more than after warm-up."""
    service = attack.service
    assert service.proc.poll() is None, "the server died"
    deadline = time.monotonic() + 5
    while (health := httpx.get(f"{service.base_url}/health", timeout=10)).json()["in_flight"]:
        assert time.monotonic() < deadline, "a request is stuck in flight"
        time.sleep(0.02)
    assert health.status_code == 200
    now = settled_holdings(service.pid, service.temp_dir, attack.baseline)
    assert not now.leaks_against(attack.baseline), now.leaks_against(attack.baseline)
    peaks = {pid: peak_rss_mb(pid) for pid in now.worker_fds}
    WORKER_PEAKS_MB.append(max(peaks.values()))
    assert max(peaks.values()) < WORKER_PEAK_MB, peaks


def run_case(attack: Hostile, expected: Expected, reply: Reply) -> None:
    assert hostile.mismatch(reply, expected) is None, hostile.mismatch(reply, expected)
    check_unharmed(attack)
    OUTCOMES[expected.label] += 1


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda case: case.name)
def test_hostile_file(under_attack: Hostile, case: FileCase) -> None:
    data = case.make(under_attack.scratch)
    run_case(under_attack, case.expected, _post_file(under_attack.target, case.filename, data))


@pytest.mark.parametrize("name", PLAYLISTS)
def test_playlist_reaches_nothing(under_attack: Hostile, mp4: Path, name: str) -> None:
    """HLS/concat playlists could make FFmpeg fetch URLs or read local files (SSRF)."""
    cases = hostile.playlist_cases(under_attack.canary.port, mp4)
    case = next(c for c in cases if c.name == name)
    data = case.make(under_attack.scratch)

    run_case(under_attack, case.expected, _post_file(under_attack.target, case.filename, data))
    assert under_attack.canary.connections == 0


@pytest.mark.parametrize("case", PROTOCOL_CASES, ids=lambda case: case.name)
def test_hostile_request(under_attack: Hostile, case: ProtocolCase) -> None:
    reply = case.send(under_attack.target)

    run_case(under_attack, case.expected, reply)
    assert not Path("/tmp/vidlstm-hostile-traversal.mp4").exists()


def _nice(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def test_decode_workers_yield_cpu_and_memory_to_the_server(under_attack: Hostile) -> None:
    """Decoders run niced, and are what the kernel kills first when memory runs out."""
    server = under_attack.service.pid
    workers = [
        pid
        for pid in descendants(server)
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(workers) == 2
    assert {Path(f"/proc/{pid}/oom_score_adj").read_text().strip() for pid in workers} == {"1000"}
    assert {_nice(pid) for pid in workers} == {min(_nice(server) + 10, 19)}
    assert Path(f"/proc/{server}/oom_score_adj").read_text().strip() == "0"


def test_server_log_is_clean(under_attack: Hostile) -> None:
    """No traceback, no error-level line: every hostile input was an expected outcome."""
    lines = [json.loads(line) for line in under_attack.service.log_lines() if line.startswith("{")]
    errors = [entry for entry in lines if entry["level"] in ("error", "critical")]
    assert errors == []
    assert not any("Traceback" in line for line in under_attack.service.log_lines())


def test_counts_by_outcome(record_property: Callable[[str, object], None]) -> None:
    kinds = sum(OUTCOMES.values())
    figures = ", ".join(f"{label}: {n}" for label, n in sorted(OUTCOMES.items()))
    peak = max(WORKER_PEAKS_MB, default=0.0)
    record_property(
        "figures", f"{kinds} hostile cases by outcome: {figures}; worker peak RSS {peak:.0f} MB"
    )
    if kinds:  # this module's cases ran (not deselected)
        assert kinds >= 35
