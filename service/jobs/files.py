"""The jobs directory: the SQLite file, the uploads jobs hold, and uploads on their way in.

``DIR/jobs.sqlite3`` (and its WAL), ``DIR/uploads/<id>.upload`` for each queued or
running job, ``DIR/incoming/`` for uploads still streaming. An upload is made
durable before its job is: its data synced, then renamed into ``uploads/`` and
the directory synced, so a job that was answered 202 has its file after a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

DB_NAME = "jobs.sqlite3"
# Files in incoming/ older than this are left from a process that died mid-upload.
STALE_INCOMING_S = 3600.0
# An upload is renamed in just before its job is inserted: one without a job is an
# orphan only once it is older than this.
ORPHAN_GRACE_S = 300.0
_READ_BYTES = 1 << 20


class JobFiles:
    """Paths and durable writes under the jobs directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / DB_NAME
        self.uploads = root / "uploads"
        self.incoming = root / "incoming"

    def open(self) -> None:
        for path in (self.root, self.uploads, self.incoming):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        cutoff = time.time() - STALE_INCOMING_S
        for stale in self.incoming.iterdir():
            with contextlib.suppress(OSError):
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()

    def upload(self, job_id: str) -> Path:
        return self.uploads / f"{job_id}.upload"

    def progress(self, job_id: str) -> Path:
        """Where a running job's decode counts its frames (this process's, short-lived)."""
        return self.incoming / f"{job_id}.progress"

    def seal(self, path: Path) -> str:
        """Sync ``path``'s data to disk; returns its SHA-256 (read in the same pass)."""
        digest = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while chunk := os.read(fd, _READ_BYTES):
                digest.update(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest.hexdigest()

    def keep(self, path: Path, job_id: str) -> Path:
        """Move a sealed upload to the job's own name, durably."""
        final = self.upload(job_id)
        path.rename(final)
        _sync_dir(self.uploads)
        return final

    def discard(self, job_id: str) -> None:
        self.upload(job_id).unlink(missing_ok=True)

    def orphans(self, open_ids: set[str]) -> list[Path]:
        """Uploads no queued or running job holds (finished, canceled, swept)."""
        cutoff = time.time() - ORPHAN_GRACE_S
        found = []
        for path in self.uploads.glob("*.upload"):
            with contextlib.suppress(OSError):
                if path.stem not in open_ids and path.stat().st_mtime < cutoff:
                    found.append(path)
        return found

    def db_bytes(self) -> int:
        """The database's size on disk, its WAL included."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += self.db.with_name(DB_NAME + suffix).stat().st_size
        return total


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
