"""How far a decode has got: frames sampled out of all, in a 16-byte file.

A decode runs in a worker process and returns only when it is done; a job on a
long video wants to show progress meanwhile. The worker counts the frames it has
picked (:class:`FrameProgress`, thread-safe: the two halves of a long video count
at once) and rewrites the file at most every ``WRITE_EVERY_S``; the server reads
it (:func:`read_progress`). One ``pwrite`` of 16 bytes at offset 0 is atomic
enough here: a torn read is only a stale one.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

WRITE_EVERY_S = 0.25
_LAYOUT = struct.Struct("<qq")  # frames done, frames in all


class FrameProgress:
    """The worker's side: counts frames and writes the count now and then."""

    def __init__(self, path: str | Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._lock = threading.Lock()
        self.done = 0
        self.total = 0
        self._written_at = 0.0

    def start(self, total: int) -> None:
        """The number of frames the decode will pick, once the probe has told it (again:
        the count starts over)."""
        with self._lock:
            self.done, self.total = 0, total
            self._write()

    def frame(self) -> None:
        """One more frame picked."""
        with self._lock:
            self.done += 1
            if time.monotonic() - self._written_at >= WRITE_EVERY_S or self.done == self.total:
                self._write()

    def close(self) -> None:
        os.close(self._fd)

    def _write(self) -> None:
        os.pwrite(self._fd, _LAYOUT.pack(self.done, self.total), 0)
        self._written_at = time.monotonic()


def read_progress(path: Path) -> float | None:
    """The fraction of frames picked, or None before the decode has counted them."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < _LAYOUT.size:
        return None
    done, total = (int(x) for x in _LAYOUT.unpack_from(data))
    if total <= 0:
        return None
    return min(1.0, max(0.0, done / total))


def read_counts(path: Path) -> tuple[int, int]:
    """``(frames picked, frames in all)`` as last written."""
    done, total = _LAYOUT.unpack_from(path.read_bytes())
    return int(done), int(total)
