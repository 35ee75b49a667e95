"""A real ``python -m service`` in a subprocess, and what it holds, read from ``/proc``.

Used by the hostile-input suite and the soak/overload benchmarks: open file
descriptors of the server and of each decode worker (the whole process
tree), each process's peak memory, and the uploads left in the spool.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PROC = Path("/proc")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    out, todo = [], children(pid)
    while todo:
        child = todo.pop()
        out.append(child)
        todo += children(child)
    return out


def open_fds(pid: int) -> int:
    try:
        return sum(1 for _ in (PROC / str(pid) / "fd").iterdir())
    except FileNotFoundError:
        return 0


def peak_rss_mb(pid: int) -> float:
    """The process's own high-water mark of resident memory (``VmHWM``)."""
    return _status_kb(pid, "VmHWM") / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def _status_kb(pid: int, key: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def spooled(temp_dir: Path) -> list[Path]:
    """Files under the server's temp dir (its spool folder itself aside)."""
    return [p for p in temp_dir.rglob("*") if p.is_file()]


@dataclass(frozen=True, slots=True)
class Holdings:
    """What a server process tree holds at one instant."""

    server_fds: int
    worker_fds: dict[int, int]  # pid -> open fds, for every process below the server
    files: list[Path]

    def leaks_against(self, before: Holdings) -> list[str]:
        """What grew since ``before``, allowing for workers replaced by new ones."""
        problems = []
        if self.server_fds > before.server_fds:
            problems.append(f"server fds {before.server_fds} -> {self.server_fds}")
        if len(self.worker_fds) > len(before.worker_fds):
            problems.append(f"processes {len(before.worker_fds)} -> {len(self.worker_fds)}")
        most = max(before.worker_fds.values(), default=0)
        for pid, count in self.worker_fds.items():
            # A worker kept from before must not have grown; a new one may not exceed the most.
            was = before.worker_fds.get(pid, most)
            if count > was:
                problems.append(f"worker {pid} fds {was} -> {count}")
        if self.files:
            problems.append(f"files left: {[p.name for p in self.files]}")
        return problems


def holdings(pid: int, temp_dir: Path) -> Holdings:
    return Holdings(
        server_fds=open_fds(pid),
        worker_fds={child: open_fds(child) for child in descendants(pid)},
        files=spooled(temp_dir),
    )


def settled_holdings(pid: int, temp_dir: Path, before: Holdings, timeout_s: float = 5) -> Holdings:
    """Holdings once they stop exceeding ``before`` (connections close, files unlink
    asynchronously), or as they are when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = holdings(pid, temp_dir)
        if not now.leaks_against(before) or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServiceProcess:
    """A running ``python -m service``: its process, address, temp dir and log file."""

    proc: subprocess.Popen[bytes]
    port: int
    temp_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def holdings(self) -> Holdings:
        return holdings(self.pid, self.temp_dir)

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()


@contextlib.contextmanager
def run_service(
    model: Path,
    work_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    ready_s: float = 90,
    module: str = "service",
) -> Iterator[ServiceProcess]:
    """Start ``python -m service`` (or ``module``) on a free port; stop it (SIGTERM, then
    kill) afterwards."""
    temp_dir = work_dir / "spool"
    temp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {
        **os.environ,
        "VIDLSTM_MODEL_PATH": str(model),
        "VIDLSTM_PORT": str(port),
        "VIDLSTM_TEMP_DIR": str(temp_dir),
        "VIDLSTM_PROVIDERS": "cpu",
        "VIDLSTM_INTRA_OP_THREADS": "1",
        **(env or {}),
    }
    log_path = work_dir / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=REPO, env=full_env, stdout=log, stderr=log
        )
    service = ServiceProcess(proc, port, temp_dir, log_path, dict(env or {}))
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the service exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{service.base_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the service did not become ready")
            time.sleep(0.1)
        yield service
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
