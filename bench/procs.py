"""Process-tree monitor: memory and CPU of a server and all its workers, from ``/proc``.

Peak RSS is the highest *sum* over the tree seen by sampling (every 50 ms), and
beside it the sum of each process's own kernel high-water mark (``VmHWM``),
an upper bound that no sampling can miss. CPU is the tree's user+system time;
the machine's busy share comes from ``/proc/stat`` (other users' load included).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (by parent pid), at this instant."""
    children = _children()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def front_pids(root: int) -> list[int]:
    """The HTTP front of the service rooted at ``root``: its serving process(es) and
    their supervisor, without the decode workers (the tree's leaves) or
    multiprocessing's resource trackers."""
    children = _children()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [k for k in children.get(pid, []) if "resource_tracker" not in _cmdline(k)]
        if kids or pid == root:
            tree.append(pid)
            todo.extend(kids)
    return tree


def _cmdline(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int], *, reaped: bool = True) -> float:
    """User + system CPU seconds of ``pids`` so far, with their reaped children's
    unless ``reaped`` is False (a server's replaced decode workers are not its own)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(f) for f in fields[11 : 15 if reaped else 13])
    return total / TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot; diff two readings for a share."""
    first = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first]
    idle = values[3] + values[4]  # idle + iowait
    return float(sum(values) - idle), float(sum(values))


@dataclass(frozen=True, slots=True)
class Usage:
    """What a process tree used during one measured window."""

    wall_s: float
    tree_cpu_s: float  # CPU seconds of the server and its workers
    machine_busy: float  # share of all cores busy (anyone's), 0..1

    @property
    def tree_cores(self) -> float:
        return self.tree_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class TreeMonitor:
    """Samples the memory of ``root``'s process tree in a thread until stopped."""

    def __init__(self, root: int, *, interval_s: float = 0.05) -> None:
        self.root = root
        self.interval_s = interval_s
        self.peak_rss_kb = 0
        self.peak_processes = 0
        self._hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-monitor", daemon=True)

    def __enter__(self) -> TreeMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024

    @property
    def hwm_sum_mb(self) -> float:
        """Sum of each process's own peak: an upper bound of the tree's peak."""
        return sum(self._hwm.values()) / 1024

    def window(self) -> _Window:
        """Start measuring CPU; call ``.usage()`` on the result at the end."""
        return _Window(self.root)

    def _sample(self) -> None:
        tree_refresh = 0.0
        pids: list[int] = []
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= tree_refresh:  # workers may be replaced; scanning /proc costs ms
                pids, tree_refresh = descendants(self.root), now + 1.0
            rss = 0
            for pid in pids:
                rss += _status_kb(pid, "VmRSS")
                self._hwm[pid] = max(self._hwm.get(pid, 0), _status_kb(pid, "VmHWM"))
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_processes = max(self.peak_processes, len(pids))
            self._stop.wait(self.interval_s)


class _Window:
    def __init__(self, root: int) -> None:
        self.pids = descendants(root)
        self.start = time.perf_counter()
        self.cpu = cpu_seconds(self.pids)
        self.busy = machine_busy()

    def usage(self) -> Usage:
        busy, total = machine_busy()
        share = (busy - self.busy[0]) / max(total - self.busy[1], 1.0)
        return Usage(
            wall_s=time.perf_counter() - self.start,
            tree_cpu_s=cpu_seconds(self.pids) - self.cpu,
            machine_busy=share,
        )
