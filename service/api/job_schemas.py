"""Response bodies of the jobs API (``/jobs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.schemas import ClassifyResponse, Problem


class JobProgress(BaseModel):
    fraction: float = Field(ge=0, le=1, description="Done so far, 0 to 1; never goes down.")
    segments_done: int = Field(description="Windows classified so far.")
    segments_total: int | None = Field(description="Windows in all, once the video is probed.")


class JobQuery(BaseModel):
    top_k: int | None
    window_s: float | None = Field(description="Window length; null: no segments.")
    model: str | None
    version: str | None


class JobResponse(BaseModel):
    id: str
    status: str = Field(description="queued, running, succeeded, failed or canceled.")
    created_at: str = Field(description="RFC 3339, UTC.")
    updated_at: str
    expires_at: str | None = Field(description="When the result is deleted (finished jobs).")
    progress: JobProgress
    attempts: int = Field(description="Runs started (more than 1: its server stopped).")
    query: JobQuery
    result: ClassifyResponse | None = Field(
        None, description="The POST /classify body, once succeeded (not in lists)."
    )
    error: Problem | None = Field(None, description="The problem, once failed.")


class JobList(BaseModel):
    jobs: list[JobResponse]
    next_page_token: str | None = Field(description="Pass as page_token for the next page.")
