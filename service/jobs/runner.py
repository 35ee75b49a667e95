"""Runs queued jobs in a serving process: claims, leases, results, expiry.

``VIDLSTM_JOBS_WORKERS`` loops per process each claim the oldest queued job (in
the store's transaction, so two processes never take the same one), run it
(:mod:`service.jobs.work`) and store its result or its problem. A heartbeat
renews the leases of the jobs running here and stops one that was canceled
meanwhile. A sweeper deletes expired jobs and uploads no job holds. On shutdown
the jobs running here are put back in the queue, the attempt not counted; a
process that dies without that leaves leases that run out, and the next claim
anywhere requeues those jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import Any

from service.core.errors import InternalError, UnavailableError, VidlstmError
from service.core.runtime import Runtime
from service.jobs.files import JobFiles
from service.jobs.record import JobRecord
from service.jobs.store import JobStore
from service.jobs.work import Progress, run_job

log = logging.getLogger(__name__)

# How often an idle runner looks for work it was not woken for (another process's
# submit, a lapsed lease), at most.
IDLE_POLL_S = 1.0
# A job that cannot start now (no model version ready, the server full) waits this long.
RETRY_LATER_S = 1.0
SWEEP_EVERY_S = 60.0


class JobLostError(Exception):
    """The job is no longer this process's to run (canceled, or its lease taken over)."""


class JobRunner:
    """The job loops, heartbeat and sweeper of one serving process."""

    def __init__(self, runtime: Runtime, store: JobStore, files: JobFiles) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = store
        self.files = files
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        work = [self._loop() for _ in range(self.settings.jobs_workers)]
        for i, coro in enumerate([*work, self._heartbeat(), self._sweeper()]):
            self._spawn(coro, f"jobs-{i}")

    def wake(self) -> None:
        """A job was submitted here: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking jobs; put the ones running here back in the queue."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        now = time.time()
        for job_id in list(self._running):
            await asyncio.to_thread(self.store.release, job_id, self.owner, now)
            log.info("job %s requeued at shutdown", job_id)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _loop(self) -> None:
        s = self.settings
        while True:
            if not self.runtime.lifecycle.ready:
                await asyncio.sleep(IDLE_POLL_S / 4)
                continue
            job, given_up = await asyncio.to_thread(
                self.store.claim,
                self.owner,
                now=time.time(),
                lease_s=s.jobs_lease_s,
                max_attempts=s.jobs_max_attempts,
            )
            for failed in given_up:
                log.warning("job %s failed: interrupted %d times", failed.id, failed.attempts)
                self.files.discard(failed.id)
            if job is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(IDLE_POLL_S, s.jobs_lease_s / 2)):
                        await self._wake.wait()
                continue
            task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
            self._running[job.id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the loop was stopped: so is the job
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self._stopping:
                    raise
            finally:
                if not self._stopping:
                    self._running.pop(job.id, None)

    async def _run(self, job: JobRecord) -> None:
        """Run ``job`` and store how it ended; cancelled if it stops being ours."""
        log.info("job %s started", job.id, extra={"attempt": job.attempts})
        started = time.perf_counter()
        try:
            response = await run_job(
                self.runtime,
                self.files.upload(job.id),
                job.params,
                upload_ms=job.upload_ms,
                report=lambda p: self._report(job.id, p),
                progress_path=self.files.progress(job.id),
            )
        except JobLostError:
            log.info("job %s canceled while running", job.id)
            return
        except UnavailableError as err:  # not the video's fault: try again shortly
            log.info("job %s deferred: %s", job.id, err.detail)
            await asyncio.to_thread(self.store.release, job.id, self.owner, time.time())
            await asyncio.sleep(RETRY_LATER_S)
            return
        except VidlstmError as err:
            await self._finish(job, error=dict(err.problem()))
            return
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            log.exception("job %s failed on our side", job.id)
            await self._finish(job, error=dict(InternalError("job failed").problem()))
            return
        await self._finish(job, result=response.model_dump(mode="json"))
        log.info("job %s done in %.1f s", job.id, time.perf_counter() - started)

    async def _report(self, job_id: str, progress: Progress) -> None:
        ours = await asyncio.to_thread(
            self.store.progress,
            job_id,
            self.owner,
            fraction=progress.fraction,
            done=progress.segments_done,
            total=progress.segments_total,
            now=time.time(),
        )
        if not ours:
            raise JobLostError(job_id)

    async def _finish(
        self,
        job: JobRecord,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        now = time.time()
        await asyncio.to_thread(
            self.store.finish,
            job.id,
            self.owner,
            result=result,
            error=error,
            now=now,
            expires_at=now + self.settings.jobs_ttl_s,
        )
        self.files.discard(job.id)
        outcome = "succeeded" if error is None else "failed"
        self.runtime.metrics.jobs.labels(outcome=outcome).inc()
        log.info("job %s %s", job.id, outcome, extra={"problem": error and error["type"]})

    async def _heartbeat(self) -> None:
        every = self.settings.jobs_lease_s / 3
        while True:
            await asyncio.sleep(every)
            until = time.time() + self.settings.jobs_lease_s
            for job_id, task in list(self._running.items()):
                ours = await asyncio.to_thread(self.store.renew, job_id, self.owner, until)
                if not ours and not task.done():
                    log.info("job %s canceled while running", job_id)
                    task.cancel()

    async def _sweeper(self) -> None:
        every = min(SWEEP_EVERY_S, self.settings.jobs_ttl_s / 4)
        while True:
            await self.sweep()
            await asyncio.sleep(every)

    async def sweep(self) -> None:
        """Delete expired jobs, and uploads that no queued or running job holds."""
        try:
            expired = await asyncio.to_thread(self.store.sweep, time.time())
            for job_id in expired:
                self.files.discard(job_id)
            open_ids = await asyncio.to_thread(self.store.open_ids)
            for path in await asyncio.to_thread(self.files.orphans, open_ids):
                path.unlink(missing_ok=True)
        except Exception:  # the sweeper must outlive a bad pass (a disk error)
            log.exception("jobs sweep failed")
            return
        if expired:
            log.info("swept %d expired jobs", len(expired))
