"""Real processes on loopback for the load-balancer tests: service replicas and nginx.

Each process runs in its own session (process group), writes its output to a
file and is waited for, so a test leaves nothing behind even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from deploy.nginx.render import NginxConfig, write_config

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def find_nginx() -> str | None:
    """The nginx binary; /usr/sbin is not on every user's PATH."""
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class Process:
    """A child process in its own session, its output in ``log``."""

    def __init__(self, argv: list[str], *, log: Path, env: Mapping[str, str] | None = None):
        self.argv = argv
        self.log = log
        self.env = dict(env) if env is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> None:
        self._out = self.log.open("ab")
        self._proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        """Signal the main process only, as ``docker stop`` signals PID 1."""
        os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL every process of the group: the main one and its workers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def wait(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self._proc is not None
        return self._proc.wait(timeout=timeout_s)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop (politely first), reap, and close the log; safe to call twice."""
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    self.send(sig)
                    self._proc.wait(timeout=STOP_TIMEOUT_S)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
            self.kill_group()  # orphaned workers too
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        if self._out is not None:
            self._out.close()
            self._out = None

    def wait_ready(self, probe: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll ``probe`` until it answers 200; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.argv} exited:\n{tail(self.log)}")
            try:
                if httpx.get(probe, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{probe} not ready after {timeout_s} s:\n{tail(self.log)}")


class Replica(Process):
    """``python -m MODULE`` (the service, or a test's variant of it) on 127.0.0.1:``port``."""

    def __init__(
        self,
        name: str,
        *,
        port: int,
        settings: Mapping[str, str],
        log_dir: Path,
        module: str = "service",
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDLSTM_")}
        env.update(settings)
        env.update(VIDLSTM_HOST="127.0.0.1", VIDLSTM_PORT=str(port))
        super().__init__([sys.executable, "-m", module], log=log_dir / f"{name}.log", env=env)
        self.name = name
        self.port = port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def ensure_running(self) -> None:
        if not self.running:
            self.stop()
            self.start()
        self.wait_ready(self.url + "/health")


class Nginx(Process):
    """nginx rendered from deploy/nginx/, unprivileged paths under ``prefix``."""

    def __init__(self, binary: str, prefix: Path, config: NginxConfig):
        self.prefix = prefix
        self.conf = write_config(config, prefix / "nginx.conf")
        self.access_log = Path(config.access_log)
        super().__init__(
            [binary, "-p", str(prefix), "-c", str(self.conf), "-e", "stderr"],
            log=prefix / "nginx.log",
        )
        self.url = "http://" + config.listen

    def test_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, "-t"], capture_output=True, text=True, timeout=30, check=False
        )

    def entries(self, expect: Iterable[str] = (), timeout_s: float = 10.0) -> dict[str, Any]:
        """The access log, one JSON object per request id, once ``expect`` are all in.

        nginx writes a line when it finalises a request, which can be a little
        after the client has its answer (after a 413 it first reads and drops
        the rest of the body), so the ids a test needs are waited for.
        """
        wanted = set(expect)
        deadline = time.monotonic() + timeout_s
        while True:
            entries: dict[str, Any] = {}
            for line in self.access_log.read_text().splitlines():
                entry = json.loads(line)
                entries[entry["request_id"]] = entry
            if wanted <= entries.keys() or time.monotonic() > deadline:
                return entries
            time.sleep(0.05)
