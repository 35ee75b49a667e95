"""The jobs table: SQLite in WAL mode in the jobs directory, shared by every serving
process of a replica (each claims jobs in a transaction of its own).

A running job is leased: its owner renews the lease while it works. A lease that
runs out means its owner died (``kill -9``, a crash, the machine): the next claim
puts the job back in the queue, or fails it once it has been tried
``max_attempts`` times, so no job stays ``running`` forever. Every method is
blocking (call it on a thread) and commits before it returns, synchronously
(``synchronous=FULL``): a 202 is only sent once the job is on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.core.errors import JobInterruptedError
from service.jobs.record import JobRecord, JobStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT,
    upload_sha256 TEXT NOT NULL,
    upload_bytes INTEGER NOT NULL,
    upload_ms REAL NOT NULL DEFAULT 0,
    params TEXT NOT NULL,
    fraction REAL NOT NULL DEFAULT 0,
    segments_done INTEGER NOT NULL DEFAULT 0,
    segments_total INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until REAL,
    result TEXT,
    error TEXT,
    UNIQUE (client, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, id);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at);
"""
_OPEN = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class IdempotencyConflictError(Exception):
    """Another job already holds the idempotency key; it carries that job."""

    def __init__(self, existing: JobRecord) -> None:
        super().__init__(existing.id)
        self.existing = existing


class JobStore:
    """Reads and writes job records; one connection, used by one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)  # its own transaction

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (no upgrade deadlock between processes)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...]) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return JobRecord.from_row(row) if row else None

    # -- submit, read, list ---------------------------------------------------------

    def insert(self, job: JobRecord) -> JobRecord:
        """Store a new queued job; :class:`IdempotencyConflictError` if its key is taken."""
        try:
            with self._transaction() as db:
                if job.idempotency_key is not None:  # a key whose job expired is free again
                    db.execute(
                        "DELETE FROM jobs WHERE client = ? AND idempotency_key = ?"
                        " AND expires_at <= ?",
                        (job.client, job.idempotency_key, job.created_at),
                    )
                db.execute(
                    "INSERT INTO jobs (id, status, created_at, updated_at, expires_at, client,"
                    " idempotency_key, upload_sha256, upload_bytes, upload_ms, params)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job.id, job.status.value, job.created_at, job.updated_at, job.expires_at,
                     job.client, job.idempotency_key, job.upload_sha256, job.upload_bytes,
                     job.upload_ms,
                     job.params.to_json()),
                )  # fmt: skip
        except sqlite3.IntegrityError:
            existing = self.by_key(job.client, job.idempotency_key or "")
            if existing is None:  # expired and swept in between: a fresh start
                raise
            raise IdempotencyConflictError(existing) from None
        return job

    def get(self, job_id: str, now: float, client: str | None = None) -> JobRecord | None:
        """The job, or None if there is none, its result has expired, or (``client``
        given) it is another client's."""
        return self._one(
            "SELECT * FROM jobs WHERE id = ? AND expires_at > ? AND (? IS NULL OR client = ?)",
            (job_id, now, client, client),
        )

    def by_key(self, client: str, key: str) -> JobRecord | None:
        return self._one(
            "SELECT * FROM jobs WHERE client = ? AND idempotency_key = ?", (client, key)
        )

    def page(
        self, *, client: str, status: JobStatus | None, after: str | None, limit: int, now: float
    ) -> list[JobRecord]:
        """``client``'s jobs oldest first (ids sort by time), after the id last seen."""
        rows = self._db_rows(
            "SELECT * FROM jobs WHERE client = ? AND expires_at > ? AND (? IS NULL OR status = ?)"
            " AND (? IS NULL OR id > ?) ORDER BY id LIMIT ?",
            (client, now, *(2 * [status.value if status else None]), after, after, limit),
        )
        return [JobRecord.from_row(r) for r in rows]

    def _db_rows(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def open_bytes(self) -> int:
        """Bytes of uploads still held: those of queued and running jobs."""
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(upload_bytes), 0) FROM jobs WHERE status IN (?, ?)", _OPEN
            ).fetchone()
        return int(row[0])

    # -- running ----------------------------------------------------------------------

    def claim(
        self, owner: str, *, now: float, lease_s: float, max_attempts: int
    ) -> tuple[JobRecord | None, list[JobRecord]]:
        """Take the oldest queued job, first requeueing (or failing) those whose lease ran
        out. Returns the job taken, if any, and the jobs failed for too many attempts."""
        with self._transaction() as db:
            lapsed = db.execute(
                "SELECT * FROM jobs WHERE status = ? AND lease_until < ?",
                (JobStatus.RUNNING.value, now),
            ).fetchall()
            given_up = []
            for row in lapsed:
                if row["attempts"] >= max_attempts:
                    error = _interrupted(row["attempts"])
                    db.execute(
                        "UPDATE jobs SET status = ?, error = ?, owner = NULL, updated_at = ?"
                        " WHERE id = ?",
                        (JobStatus.FAILED.value, json.dumps(error), now, row["id"]),
                    )
                    given_up.append(row["id"])
                else:
                    db.execute(
                        "UPDATE jobs SET status = ?, owner = NULL, updated_at = ? WHERE id = ?",
                        (JobStatus.QUEUED.value, now, row["id"]),
                    )
            row = db.execute(
                "SELECT id FROM jobs WHERE status = ? ORDER BY id LIMIT 1",
                (JobStatus.QUEUED.value,),
            ).fetchone()
            claimed = None
            if row is not None:
                db.execute(
                    "UPDATE jobs SET status = ?, owner = ?, lease_until = ?,"
                    " attempts = attempts + 1, updated_at = ? WHERE id = ?",
                    (JobStatus.RUNNING.value, owner, now + lease_s, now, row["id"]),
                )
                claimed = _read(db, row["id"])
            failed = [_read(db, job_id) for job_id in given_up]
        return claimed, failed

    def renew(self, job_id: str, owner: str, lease_until: float) -> bool:
        """Extend the lease; False if the job is no longer ours to run (canceled, taken)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND owner = ? AND status = ?",
                (lease_until, job_id, owner, JobStatus.RUNNING.value),
            )
        return cursor.rowcount == 1

    def progress(
        self, job_id: str, owner: str, *, fraction: float, done: int, total: int | None, now: float
    ) -> bool:
        """Record progress, never lower than what was shown; False if no longer ours."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET fraction = MAX(fraction, ?), segments_done = MAX(segments_done,"
                " ?), segments_total = COALESCE(?, segments_total), updated_at = ?"
                " WHERE id = ? AND owner = ? AND status = ?",
                (fraction, done, total, now, job_id, owner, JobStatus.RUNNING.value),
            )
        return cursor.rowcount == 1

    def finish(
        self,
        job_id: str,
        owner: str,
        *,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        now: float,
        expires_at: float,
    ) -> bool:
        """End a running job of ours: ``succeeded`` with ``result`` or ``failed`` with ``error``."""
        status = JobStatus.SUCCEEDED if error is None else JobStatus.FAILED
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, owner = NULL,"
                " fraction = CASE WHEN ? THEN 1.0 ELSE fraction END,"
                " updated_at = ?, expires_at = ? WHERE id = ? AND owner = ? AND status = ?",
                (status.value, json.dumps(result) if result is not None else None,
                 json.dumps(error) if error is not None else None, error is None,
                 now, expires_at, job_id, owner, JobStatus.RUNNING.value),
            )  # fmt: skip
        return cursor.rowcount == 1

    def release(self, job_id: str, owner: str, now: float) -> None:
        """Put a running job of ours back in the queue, the attempt not counted (a drain)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, owner = NULL, attempts = MAX(attempts - 1, 0),"
                " updated_at = ? WHERE id = ? AND owner = ? AND status = ?",
                (JobStatus.QUEUED.value, now, job_id, owner, JobStatus.RUNNING.value),
            )

    def cancel(self, job_id: str, *, now: float, expires_at: float) -> JobRecord | None:
        """Cancel a queued or running job (a finished one is left as it is)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = ?, owner = NULL, updated_at = ?, expires_at = ?"
                " WHERE id = ? AND status IN (?, ?)",
                (JobStatus.CANCELED.value, now, expires_at, job_id, *_OPEN),
            )
        return self.get(job_id, now)

    def delete(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def sweep(self, now: float) -> list[str]:
        """Delete the jobs whose results have expired; returns their ids."""
        with self._transaction() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE expires_at <= ?", (now,))]
            db.execute("DELETE FROM jobs WHERE expires_at <= ?", (now,))
        return ids

    def open_ids(self) -> set[str]:
        """Ids of the queued and running jobs (whose uploads must stay)."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM jobs WHERE status IN (?, ?)", _OPEN)
            return {r["id"] for r in rows}


def _read(db: sqlite3.Connection, job_id: str) -> JobRecord:
    return JobRecord.from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def _interrupted(attempts: int) -> dict[str, Any]:
    err = JobInterruptedError(
        f"the server stopped {attempts} times while running this job; not retried"
    )
    return dict(err.problem())
