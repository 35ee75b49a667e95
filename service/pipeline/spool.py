"""The spool: where uploads lie while they are decoded, and how they get there and go.

Each server process spools into a directory of its own under ``temp_dir``,
removed at shutdown; one left behind by a killed process is swept at the next
start. Files are written with ``writev`` in batches and removed off the event
loop when they are big.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

SPOOL_PREFIX = "vidlstm-spool-"
# Buffers one writev takes at most (Linux: 1024).
IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 16)
# Spooled files this big are deleted on a thread: freeing their pages blocks the loop.
REMOVE_IN_THREAD_BYTES = 8 * 1024 * 1024


class Spool:
    """This process's directory for uploads in flight, under ``parent``."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            raise RuntimeError("the spool is not open")
        return self._path

    def open(self) -> Path:
        self.sweep()
        self._path = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=self.parent))
        return self._path

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None

    def sweep(self) -> None:
        """Remove spools of processes that no longer exist (killed before cleaning up)."""
        for stale in self.parent.glob(SPOOL_PREFIX + "*"):
            pid = stale.name.removeprefix(SPOOL_PREFIX).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                log.warning("removing the spool of a dead process", extra={"spool": str(stale)})
                shutil.rmtree(stale, ignore_errors=True)


_names = itertools.count()


def new_file(directory: Path) -> tuple[int, Path]:
    """A new empty file in this process's spool ``directory``, open for writing.

    Named by a counter: the directory is the process's own, so no random name
    (and no retry loop, as ``mkstemp``'s) is needed. Our own suffix, too: FFmpeg
    picks some demuxers by extension (HLS playlists, which may fetch URLs or read
    local files, need .m3u8).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    while True:
        path = directory / f"vidlstm-{next(_names)}.upload"
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:  # left by a spool of the same name: skip it
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_all(fd: int, parts: Sequence[bytes]) -> None:
    """Write ``parts`` in order at ``fd``'s offset, in as few ``writev`` calls as the OS allows.

    One system call per batch, not one per part: the writing thread then takes
    the GIL back from the event loop once per batch (per part, big uploads
    stalled the loop; bench/README.md). Partial writes are resumed.
    """
    views = deque(memoryview(part) for part in parts if part)
    while views:
        written = os.writev(fd, list(itertools.islice(views, IOV_MAX)))
        while written:
            head = views[0]
            if written < len(head):
                views[0] = head[written:]
                break
            written -= len(head)
            views.popleft()


async def remove(path: Path) -> None:
    """Delete a spooled file; a big one off the event loop (freeing its pages takes ms).

    Shielded: a request cancelled while its file is removed still removes it.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size < REMOVE_IN_THREAD_BYTES:
        path.unlink(missing_ok=True)
        return
    await asyncio.shield(asyncio.to_thread(path.unlink, missing_ok=True))
