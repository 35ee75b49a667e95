"""The servers under test, each a subprocess on a free loopback port.

- ``service``: the real ``python -m service`` with its settings from ``VIDLSTM_*``.
- ``naive`` and ``idiomatic``: ``python -m bench.naive_server`` / ``bench.idiomatic_server``.
- ``litserve-style``: ``python -m bench.litserve_style_server``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    base_url: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(name: str, model: Path, port: int) -> list[str]:
    if name == "service":
        return [sys.executable, "-m", "service"]
    if name == "service-waiting":  # the service, configured alike, its batcher reverted
        return [sys.executable, "-m", "bench.waiting_batcher_server"]
    module = {
        "naive": "bench.naive_server",
        "idiomatic": "bench.idiomatic_server",
        "litserve-style": "bench.litserve_style_server",
    }[name]
    return [sys.executable, "-m", module, "--model", str(model), "--port", str(port)]


def python_path(inherited: str | None) -> str:
    """The servers' ``PYTHONPATH``: the repository first, then the caller's own (packages
    kept outside the interpreter's site-packages, as on a GPU machine without a network)."""
    return os.pathsep.join(filter(None, (str(REPO), inherited)))


@contextlib.contextmanager
def running(
    name: str,
    model: Path,
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    label: str | None = None,
) -> Iterator[Server]:
    """Start server ``name`` and wait until it answers ``/health`` 200; stop it on exit.

    ``label``: what to call it (its log file too), when one server runs twice.
    """
    label = label or name
    port = free_port()
    environ = {
        **os.environ,
        "PYTHONPATH": python_path(os.environ.get("PYTHONPATH")),
        "VIDLSTM_MODEL_PATH": str(model),
        "VIDLSTM_PORT": str(port),
        "VIDLSTM_HOST": "127.0.0.1",
        "VIDLSTM_LOG_LEVEL": "warning",
        **(env or {}),
    }
    stderr = (log_dir / f"{label}.log").open("wb") if log_dir else subprocess.DEVNULL
    proc = subprocess.Popen(
        _command(name, model, port),
        cwd=REPO,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,  # a Ctrl-C of the bench must not reach it first
    )
    server = Server(label, f"http://127.0.0.1:{port}", proc)
    try:
        _wait_healthy(server)
        log.info("%s ready on port %d (pid %d)", label, port, proc.pid)
        yield server
    finally:
        stop(server)
        if log_dir:
            stderr.close()  # type: ignore[union-attr]


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode} at start")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} was not healthy within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


def stop(server: Server) -> None:
    """SIGTERM (the service drains), then SIGKILL the group if it lingers."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop; killing it", server.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
