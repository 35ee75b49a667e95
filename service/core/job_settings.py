"""The jobs API's settings (``VIDLSTM_JOBS_*``), a part of ``Settings``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
# Inputs stay out of error messages: they may hold API keys.
SETTINGS_CONFIG = SettingsConfigDict(
    env_prefix="VIDLSTM_", frozen=True, extra="ignore", hide_input_in_errors=True
)


class JobSettings(BaseSettings):
    """Where jobs live, how long, how big, how many at once."""

    model_config = SETTINGS_CONFIG

    jobs_dir: Path | None = Field(
        default=None,
        description=(
            "Where jobs (POST /jobs) keep their records (SQLite) and uploads: a volume, so that"
            " a restart loses none. Unset: the jobs API answers 404 jobs-disabled."
        ),
    )
    jobs_ttl_s: float = Field(
        default=86400.0, gt=0, description="How long a finished job's result is kept (then 404)."
    )
    jobs_max_bytes: int = Field(
        default=20 * 1024 * MiB,
        ge=1,
        description="Cap on the uploads jobs hold on disk; a submit beyond it gets 503 jobs-full.",
    )
    jobs_max_upload_bytes: int = Field(
        default=4 * 1024 * MiB,
        ge=1,
        description="Largest upload a job takes (a long film), above the synchronous cap.",
    )
    jobs_workers: int = Field(
        default=1,
        ge=1,
        description=(
            "Jobs each serving process runs at once. A job takes a decode worker only when one"
            " is idle and one batch at a time, so synchronous requests go first."
        ),
    )
    jobs_decode_timeout_s: float = Field(
        default=1800.0, gt=0, description="Longest decode of a job's video (then failed, 504)."
    )
    jobs_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job's lease: if its server dies, it is requeued this long after.",
    )
    jobs_max_attempts: int = Field(
        default=3, ge=1, description="Tries of a job its server died running, then failed."
    )
