"""One job as stored: what was asked, where it stands, and how it ended."""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass
from typing import Any


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True, slots=True)
class JobParams:
    """What the job classifies with: the ``/classify`` query, fixed at submission."""

    top_k: int | None
    window_s: float | None  # None: the whole video only
    model: str | None
    version: str | None

    def to_json(self) -> str:
        return json.dumps(
            {"top_k": self.top_k, "window_s": self.window_s, "model": self.model,
             "version": self.version},
            sort_keys=True,
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> JobParams:
        data = json.loads(text)
        return cls(data["top_k"], data["window_s"], data["model"], data["version"])


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A row of the jobs table. Times are Unix seconds."""

    id: str
    status: JobStatus
    created_at: float
    updated_at: float
    expires_at: float
    params: JobParams
    upload_sha256: str
    upload_bytes: int
    upload_ms: float = 0.0  # receiving the upload, at submit (the result's timing_ms.upload)
    client: str = ""  # who submitted it: its API key's hash ("" without keys)
    idempotency_key: str | None = None
    fraction: float = 0.0
    segments_done: int = 0
    segments_total: int | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> JobRecord:
        return cls(
            id=row["id"],
            status=JobStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            expires_at=row["expires_at"],
            params=JobParams.from_json(row["params"]),
            upload_sha256=row["upload_sha256"],
            upload_bytes=row["upload_bytes"],
            upload_ms=row["upload_ms"],
            client=row["client"],
            idempotency_key=row["idempotency_key"],
            fraction=row["fraction"],
            segments_done=row["segments_done"],
            segments_total=row["segments_total"],
            attempts=row["attempts"],
            result=json.loads(row["result"]) if row["result"] else None,
            error=json.loads(row["error"]) if row["error"] else None,
        )
