"""Job routes: ``POST /jobs``, ``GET /jobs``, ``GET /jobs/{id}``, ``DELETE /jobs/{id}``.

Long videos as jobs: submit, poll, fetch (:mod:`service.jobs`). The inputs are
``POST /classify``'s, segments on by default; the result is its body. With API keys,
a job is its submitter's: another key sees a 404, not the job.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse

from service.api.classify import classify_params
from service.api.deps import NO_CHOICE, ClientDep, ModelChoiceDep, RuntimeDep
from service.api.job_schemas import JobList, JobProgress, JobQuery, JobResponse
from service.api.problem_docs import problem_docs
from service.api.routes import UPLOAD_BODY, TopKQuery, WindowQuery
from service.api.schemas import ClassifyResponse, Problem
from service.core.errors import JobsDisabledError
from service.jobs.queue import NEVER_S, JobQueue
from service.jobs.record import JobParams, JobRecord, JobStatus

router = APIRouter(tags=["jobs"])

JOB_ID = r"^[0-9a-f]{32}$"
JobId = Annotated[str, Path(pattern=JOB_ID, description="The id POST /jobs gave.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        pattern=r"^[!-~]+$",
        description="Submit again with the same key and bytes: the same job, not a second.",
    ),
]


async def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue | None = request.app.state.jobs
    if jobs is None:
        raise JobsDisabledError("this server keeps no jobs; its operator sets VIDLSTM_JOBS_DIR")
    return jobs


JobsDep = Annotated[JobQueue, Depends(get_jobs)]


@router.post(
    "/jobs",
    summary="Submit a video as a job (202 once the upload is on disk)",
    status_code=202,
    response_model=JobResponse,
    responses=problem_docs(400, 401, 404, 408, 413, 415, 422, 431, 500, 503),
    openapi_extra=UPLOAD_BODY,
)
async def submit_job(
    request: Request,
    *,
    runtime: RuntimeDep,
    jobs: JobsDep,
    client: ClientDep,
    top_k: TopKQuery = None,
    segments: Annotated[bool, Query(description="Classify windows too (default: yes).")] = True,
    window_s: WindowQuery = None,
    choice: ModelChoiceDep = NO_CHOICE,
    key: IdempotencyKey = None,
) -> JSONResponse:
    async with runtime.lifecycle.work():
        served = runtime.models.resolve(*choice)  # 404 now for a model that does not exist
        query = classify_params(
            runtime.settings, served.info, top_k=top_k, segments=segments, window_s=window_s
        )
        params = JobParams(top_k, query.window_s, *choice)
        job, replayed = await jobs.submit(request, params, key, client)
    headers = {"Location": f"/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(_body(job).model_dump(mode="json"), status_code=202, headers=headers)


@router.get(
    "/jobs/{job_id}",
    summary="A job: status, progress, then its result or problem",
    response_model=JobResponse,
    responses=problem_docs(401, 404, 422),
)
async def get_job(job_id: JobId, jobs: JobsDep, client: ClientDep) -> JobResponse:
    return _body(await jobs.get(job_id, client))


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a queued or running job (its upload removed); delete a finished one",
    response_model=JobResponse,
    responses=problem_docs(401, 404, 422),
)
async def cancel_job(job_id: JobId, jobs: JobsDep, client: ClientDep) -> JobResponse:
    return _body(await jobs.cancel(job_id, client))


@router.get(
    "/jobs",
    summary="Jobs, oldest first, a page at a time (results not included)",
    response_model=JobList,
    responses=problem_docs(401, 404, 422),
)
async def list_jobs(
    jobs: JobsDep,
    client: ClientDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
    page_token: Annotated[
        str | None, Query(pattern=JOB_ID, description="next_page_token of the page before.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Jobs per page.")] = 50,
) -> JobList:
    found = await jobs.page(client=client, status=status, after=page_token, limit=limit + 1)
    more = len(found) > limit
    page = found[:limit]
    return JobList(
        jobs=[_body(j, with_result=False) for j in page],
        next_page_token=page[-1].id if more else None,
    )


def _body(job: JobRecord, *, with_result: bool = True) -> JobResponse:
    p = job.params
    open_ = not job.status.finished
    result: dict[str, Any] | None = job.result if with_result else None
    return JobResponse(
        id=job.id,
        status=job.status.value,
        created_at=_time(job.created_at),
        updated_at=_time(job.updated_at),
        expires_at=None
        if open_ or job.expires_at - job.created_at >= NEVER_S
        else _time(job.expires_at),
        progress=JobProgress(
            fraction=job.fraction,
            segments_done=job.segments_done,
            segments_total=job.segments_total,
        ),
        attempts=job.attempts,
        query=JobQuery(top_k=p.top_k, window_s=p.window_s, model=p.model, version=p.version),
        result=ClassifyResponse.model_validate(result) if result is not None else None,
        error=Problem.model_validate(job.error) if job.error is not None else None,
    )


def _time(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")
