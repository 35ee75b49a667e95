"""Several serving processes on one port (``VIDLSTM_SERVER_PROCESSES``).

One Python process caps the HTTP front: receiving uploads, spooling, admission
and answering take a core's worth of event loop at ~185 requests/s. The
supervisor binds the port once and starts N children, each a complete service
(the app, its share of the decode workers, its own ONNX Runtime session),
all accepting from the one listening socket: the kernel hands a connection to
whichever process accepts first, so a busy process takes fewer, and connections
waiting in the backlog survive a child's death.

- Start-up: child 0 first; a wrong model or temp dir is its one clear error
  (exit 2) before the others start. A child accepts only once warmed up, so no
  request meets a process still warming; while none is, connections wait.
- A child killed by a signal (the OOM killer, a crash) is replaced, its share
  of the workers with it; its requests in flight are lost, nobody else's. One
  that exits with an error (warm-up failed) stops the service with that status,
  as a lone process would; so do more than ``MAX_RESTARTS`` deaths in a minute.
- SIGTERM or SIGINT: every child drains (``/health`` 503, requests finish) and
  the supervisor exits 0 when they have. A second signal stops them at once.
  Children have a process group of their own, so a terminal's Ctrl-C reaches
  them once, through here; a child whose supervisor is gone drains and exits.
  As a container's PID 1 it also reaps the orphans a killed child leaves.
- ``/metrics`` sums every process's counters (:mod:`service.core.metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess

from service.core.metrics import MULTIPROC_ENV
from service.core.settings import Settings
from service.pipeline.decode_pool import DecodeHook
from service.serving_process import Child, bind, child_settings, shares

log = logging.getLogger(__name__)

# A slot that dies this often within RESTART_WINDOW_S is not restarted again.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_SPAWN = multiprocessing.get_context("spawn")


def _metrics_root() -> str | None:
    """Memory-backed when it can be: the metric files are written on every request."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@dataclass
class _Slot:
    index: int
    process: SpawnProcess
    preflight: Event
    deaths: deque[float] = field(default_factory=deque)


class Supervisor:
    """Starts, watches, replaces and stops the serving processes.

    ``target``: a module-level function run in each (``service.server.serve_process``).
    """

    def __init__(
        self,
        settings: Settings,
        target: Callable[[Child], None],
        *,
        decode_hook: DecodeHook | None = None,
    ) -> None:
        self.settings = settings
        self.target = target
        self.processes = settings.processes
        self.decode_hook = decode_hook
        self.slots: dict[int, _Slot] = {}
        self._signals = 0
        self._forwarded = 0
        self._sock: socket.socket | None = None
        self._wakeup = -1
        self._metrics_dir: Path | None = None

    def run(self) -> int:
        """Serve until stopped; the exit status (0 after a drain)."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        # A signal wakes the watch loop at once through this pipe.
        self._wakeup, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        previous_fd = signal.set_wakeup_fd(wakeup_w)
        try:
            return self._run()
        finally:
            signal.set_wakeup_fd(previous_fd)
            os.close(wakeup_w)
            os.close(self._wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._clean_up()

    def _run(self) -> int:
        s = self.settings
        try:
            self._sock = bind(s.host, s.port)
        except OSError as err:
            log.error("cannot start: cannot listen on %s:%d: %s", s.host, s.port, err.strerror)
            return 2
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="vidlstm-metrics-", dir=_metrics_root()))
        os.environ[MULTIPROC_ENV] = str(self._metrics_dir)
        first = self._start(0)
        code = self._await_preflight(first)
        if code is not None:
            return code
        log.info(
            "serving on %s:%d with %d processes",
            s.host,
            self._sock.getsockname()[1],
            self.processes,
            extra={"decode_workers": shares(s.decode_workers, self.processes)},
        )
        for index in range(1, self.processes):
            self._start(index)
        return self._watch()

    def _start(self, index: int) -> _Slot:
        assert self._sock is not None
        preflight = _SPAWN.Event()
        child = Child(
            child_settings(self.settings, index, self.processes),
            index,
            self._sock,
            os.getpid(),
            preflight,
            self.decode_hook,
        )
        process = _SPAWN.Process(target=self.target, args=(child,), name=f"vidlstm-server-{index}")
        process.start()
        old = self.slots.get(index)
        slot = _Slot(index, process, preflight, old.deaths if old else deque())
        self.slots[index] = slot
        return slot

    def _await_preflight(self, slot: _Slot) -> int | None:
        """None once child 0 has loaded the model; else its exit status."""
        while not slot.preflight.wait(0.1):
            if self._signals:
                self._forward()
            if not slot.process.is_alive():
                slot.process.join()
                code = slot.process.exitcode or 1
                return 0 if self._signals else max(code, 1)
        return None

    def _watch(self) -> int:
        status = 0
        while self.slots:
            sentinels = {slot.process.sentinel: slot for slot in self.slots.values()}
            done = wait([*sentinels, self._wakeup], timeout=1.0)
            if self._wakeup in done:
                os.read(self._wakeup, 512)
            if self._signals > self._forwarded:
                self._forward()
            if os.getpid() == 1:
                self._reap_orphans()
            for sentinel in done:
                if sentinel == self._wakeup:
                    continue
                slot = sentinels[sentinel]  # type: ignore[index]
                slot.process.join()
                del self.slots[slot.index]
                status = self._after_exit(slot, status)
        return status

    def _after_exit(self, slot: _Slot, status: int) -> int:
        """What a child's exit means: replaced, or the service stops; the status so far."""
        code = slot.process.exitcode
        assert self._metrics_dir is not None and code is not None
        multiprocess.mark_process_dead(slot.process.pid, str(self._metrics_dir))  # type: ignore[no-untyped-call]
        if self._signals:
            if code != 0:
                log.warning("serving process %d exited with %d", slot.index, code)
            return status or (code if code > 0 else 0)
        now = time.monotonic()
        slot.deaths.append(now)
        while slot.deaths and slot.deaths[0] < now - RESTART_WINDOW_S:
            slot.deaths.popleft()
        if code < 0 and len(slot.deaths) <= MAX_RESTARTS:
            log.error(
                "serving process %d died by signal %d; starting another",
                slot.index,
                -code,
                extra={"pid": slot.process.pid},
            )
            self._start(slot.index)
            return status
        reason = f"died by signal {-code} too often" if code < 0 else f"exited with {code}"
        log.error("serving process %d %s; stopping the others", slot.index, reason)
        self._stop_all()
        return code if code > 0 else 1

    def _reap_orphans(self) -> None:
        """As a container's PID 1, the decode workers of a killed serving process become
        ours when they exit: reap them, or they stay zombies (our own children are
        left to ``multiprocessing``, which reaps them itself)."""
        ours = {slot.process.pid for slot in self.slots.values()}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if state == "Z" and int(ppid) == 1:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(int(entry.name), os.WNOHANG)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals += 1

    def _forward(self) -> None:
        """Pass each signal received on to every child, once: the first drains, the next stops."""
        while self._forwarded < self._signals:
            self._forwarded += 1
            what = "draining" if self._forwarded == 1 else "stopping"
            log.info("signal: %s the serving processes", what)
            self._close_socket()  # with the children's copies closed too, connects are refused
            self._signal_children(signal.SIGTERM)

    def _close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _stop_all(self) -> None:
        self._signals = max(self._signals, 1)
        self._forwarded = self._signals
        self._close_socket()
        self._signal_children(signal.SIGTERM)

    def _signal_children(self, sig: int) -> None:
        for slot in self.slots.values():
            if slot.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, sig)

    def _clean_up(self) -> None:
        for slot in self.slots.values():  # only after an error in here
            slot.process.kill()
            slot.process.join(5)
        self._close_socket()
        if self._metrics_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
