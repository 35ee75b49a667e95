"""The jobs API's front door: submit (durably), read, list, cancel.

A submit streams the upload into ``incoming/`` as ``/classify`` does, syncs it,
renames it to the job's name and only then inserts the job: when the client
reads 202, both are on disk. ``Idempotency-Key``: the same key with the same
bytes and parameters gives the job already made; with others, 422.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

from starlette.requests import Request

from service.api.classify import ms
from service.core.errors import (
    IdempotencyKeyReusedError,
    JobNotFoundError,
    JobsFullError,
    PayloadTooLargeError,
)
from service.core.runtime import Runtime
from service.jobs.files import JobFiles
from service.jobs.record import JobParams, JobRecord, JobStatus
from service.jobs.runner import JobRunner
from service.jobs.store import IdempotencyConflictError, JobStore
from service.pipeline.upload import receive_upload

# An open job's record does not expire; it gets its expiry when it ends.
NEVER_S = 100 * 365 * 86400.0


def new_job_id() -> str:
    """32 hex digits that sort by creation time (a UUIDv7's layout: ms time, then random)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class JobQueue:
    """Jobs of one serving process: the store it shares, and its own runner."""

    def __init__(self, runtime: Runtime, root: Path) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.files = JobFiles(root)
        self._store: JobStore | None = None
        self._runner: JobRunner | None = None

    @property
    def store(self) -> JobStore:
        assert self._store is not None, "JobQueue.open() first"
        return self._store

    @property
    def runner(self) -> JobRunner:
        assert self._runner is not None, "JobQueue.open() first"
        return self._runner

    async def open(self) -> None:
        await asyncio.to_thread(self.files.open)
        self._store = await asyncio.to_thread(JobStore, self.files.db)
        self._runner = JobRunner(self.runtime, self._store, self.files)
        self._runner.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.stop()
        if self._store is not None:
            await asyncio.to_thread(self._store.close)

    async def submit(
        self, request: Request, params: JobParams, key: str | None, client: str
    ) -> tuple[JobRecord, bool]:
        """Store the upload and its job; returns the job and whether it already existed.

        ``client`` (an API key's hash, ``""`` without keys) owns the job: no other
        client sees it, and idempotency keys are per client."""
        s, started = self.settings, time.perf_counter()
        cap = await self._room(request.headers.get("content-length"))
        # The synchronous upload's slowest accepted rate, over the bigger cap.
        timeout_s = s.upload_timeout_s * max(1.0, s.jobs_max_upload_bytes / s.max_upload_bytes)
        try:
            async with receive_upload(
                request,
                max_bytes=cap,
                temp_dir=self.files.incoming,
                idle_timeout_s=s.upload_idle_timeout_s,
                timeout_s=timeout_s,
            ) as upload:
                sha256 = await asyncio.to_thread(self.files.seal, upload.path)
                if key is not None:
                    existing = await asyncio.to_thread(self.store.by_key, client, key)
                    if existing is not None and existing.expires_at > time.time():
                        return _replay(existing, sha256, params), True
                job_id = new_job_id()
                await asyncio.to_thread(self.files.keep, upload.path, job_id)
                now = time.time()
                job = JobRecord(
                    id=job_id,
                    status=JobStatus.QUEUED,
                    created_at=now,
                    updated_at=now,
                    expires_at=now + NEVER_S,
                    params=params,
                    upload_sha256=sha256,
                    upload_bytes=upload.size,
                    upload_ms=ms(time.perf_counter() - started),
                    client=client,
                    idempotency_key=key,
                )
                try:
                    await asyncio.to_thread(self.store.insert, job)
                except IdempotencyConflictError as conflict:  # the same key, at the same time
                    self.files.discard(job_id)
                    return _replay(conflict.existing, sha256, params), True
                except BaseException:
                    self.files.discard(job_id)
                    raise
        except PayloadTooLargeError:
            if cap < s.jobs_max_upload_bytes:
                raise JobsFullError("the jobs directory is full; retry later") from None
            raise
        self.runtime.metrics.jobs.labels(outcome="submitted").inc()
        self.runner.wake()
        return job, False

    async def _room(self, declared: str | None) -> int:
        """The most this upload may take: the job upload cap, or less if the directory
        is near its cap (503 at once if the declared length is over what is left)."""
        s = self.settings
        held = await asyncio.to_thread(self.store.open_bytes)
        room = s.jobs_max_bytes - held - self.files.db_bytes()
        if room <= 0:
            raise JobsFullError("the jobs directory is full; retry later")
        if declared is not None and declared.isdigit():
            length = int(declared)
            if room < length <= s.jobs_max_upload_bytes:
                raise JobsFullError(f"no room for {length} bytes now; retry later")
        return min(s.jobs_max_upload_bytes, room)

    async def get(self, job_id: str, client: str) -> JobRecord:
        """``client``'s job ``job_id``; another client's is 404 as if it did not exist."""
        job = await asyncio.to_thread(self.store.get, job_id, time.time(), client)
        if job is None:
            raise JobNotFoundError(f"no job {job_id} (never made, deleted, or expired)")
        return job

    async def page(
        self, *, client: str, status: JobStatus | None, after: str | None, limit: int
    ) -> list[JobRecord]:
        return await asyncio.to_thread(
            self.store.page,
            client=client,
            status=status,
            after=after,
            limit=limit,
            now=time.time(),
        )

    async def cancel(self, job_id: str, client: str) -> JobRecord:
        """Cancel an open job and remove its upload; a finished one is deleted outright.

        Returns the job as it stands after the call.
        """
        job = await self.get(job_id, client)
        now = time.time()
        if job.status.finished:
            await asyncio.to_thread(self.store.delete, job_id)
            return job
        canceled = await asyncio.to_thread(
            self.store.cancel, job_id, now=now, expires_at=now + self.settings.jobs_ttl_s
        )
        self.files.discard(job_id)  # a decode still reading it keeps its open file
        if canceled is None:
            raise JobNotFoundError(f"no job {job_id}")
        if canceled.status is JobStatus.CANCELED:
            self.runtime.metrics.jobs.labels(outcome="canceled").inc()
        return canceled


def _replay(existing: JobRecord, sha256: str, params: JobParams) -> JobRecord:
    if existing.upload_sha256 != sha256 or existing.params != params:
        raise IdempotencyKeyReusedError(
            f"Idempotency-Key names job {existing.id}, submitted with other "
            + ("bytes" if existing.upload_sha256 != sha256 else "parameters")
        )
    return existing
