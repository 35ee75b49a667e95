"""Service settings: one object, read once from ``VIDLSTM_*`` environment variables.

Everything about the model itself (labels, geometry, sampling) comes from the
ONNX file's metadata, never from here: nothing is configured twice.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from service.core.job_settings import SETTINGS_CONFIG, JobSettings, MiB
from service.core.setting_values import (
    AUTO_PROVIDERS,
    check_providers,
    cpu_count,
    default_server_processes,
    split_list,
    with_keys_file,
)
from service.media.clip import DecodeMode
from service.media.probe import DEFAULT_MAX_PIXELS, Limits


class _ServiceSettings(BaseSettings):
    """The knobs of serving a request; see each field's description for the default's reason."""

    model_config = SETTINGS_CONFIG

    # -- model and execution -------------------------------------------------
    model_path: Path = Field(
        default=Path("models/vidlstm.onnx"),
        description="The exported .onnx file; labels, geometry and sampling come from it.",
    )
    model_repository: Path | None = Field(
        default=None,
        description=(
            "A directory of models, DIR/<name>/<version>/model.onnx, followed while serving: a"
            " version renamed in is loaded, checked and warmed up before it is routed to; one"
            " removed is drained and unloaded. Set, it replaces MODEL_PATH."
        ),
    )
    default_model: str | None = Field(
        default=None,
        description="The model requests get without ?model= (unset: the repository's only one).",
    )
    model_poll_s: float = Field(
        default=2.0, gt=0, description="How often the model repository is scanned (seconds)."
    )
    providers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("auto",),
        description=(
            "ONNX Runtime providers, best first: 'auto' (CUDA if it really loads, else CPU) or a "
            "list of cpu, cuda, tensorrt; without cpu, start-up fails if none loads."
        ),
    )
    cuda_tf32: bool = Field(
        default=False,
        description=(
            "Let CUDA round float32 matrix products to TF32. Off, GPU and CPU probabilities agree"
            " within the GPU check's bound, which TF32 can miss (bench/README.md, GPU)."
        ),
    )
    intra_op_threads: int = Field(
        default=1,
        ge=0,
        description=(
            "ONNX Runtime threads per run (0: all cores). One leaves the cores to the decode "
            "workers, which ORT's spinning pool fights (bench/README.md, profile); more suits big"
            " models on idle CPUs."
        ),
    )

    # -- HTTP ----------------------------------------------------------------
    host: str = Field(
        default="127.0.0.1", description="Interface to listen on (0.0.0.0 in a container)."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Accepted API keys, comma-separated; empty: no authentication."
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="A file of more API keys, one per line ('#' comments), read at start-up.",
    )
    protect_metrics: bool = Field(
        default=False, description="Require an API key for /metrics too (health probes stay open)."
    )
    log_level: str = Field(default="info", description="Python logging level of the JSON logs.")
    server_processes: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Serving processes on the one port, each with its share of the decode workers and its"
            " own ONNX Runtime session. Unset: 1 below 8 decode workers, else one per 4 workers"
            " (on 2 cores a second one bought nothing; bench/README.md, scale-up)."
        ),
    )

    # -- upload ----------------------------------------------------------------
    max_upload_bytes: int = Field(
        default=256 * MiB,
        ge=1,
        description="Largest request body, refused while streaming (~10 min of 1080p H.264).",
    )
    temp_dir: Path = Field(
        default=Path(tempfile.gettempdir()),
        description="Where uploads are spooled while they are decoded; removed right after.",
    )
    upload_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest pause in an upload (408): a stalled client must not hold a slot.",
    )
    upload_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Longest upload (408): the upload cap at 3.5 Mbit/s; stops trickling clients.",
    )

    # -- limits checked before decoding --------------------------------------
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description="Largest frame (width x height); 4096x4096 is the cap FFmpeg's fuzzers use.",
    )
    max_duration_s: float = Field(
        default=3 * 3600.0, gt=0, description="Longest video accepted (seconds), a feature film."
    )
    max_frames: int = Field(
        default=500_000,
        ge=1,
        description="Most frames a video may declare or hold: 3 h at 46 fps, above any real film.",
    )

    # -- decode workers --------------------------------------------------------
    decode_workers: int = Field(
        default_factory=cpu_count,
        ge=1,
        description="Decode worker processes; default one per CPU core this process may use.",
    )
    decode_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest decode (504, worker replaced); only pathological files come near it.",
    )
    decode_tolerance: float = Field(
        default=0.5,
        ge=0,
        le=0.5,
        description=(
            "How far (in segments) a sampled frame may lie from its segment's centre; the decoder"
            " takes the cheapest frame within it. 0.5: anywhere in the segment (TSN sampling); 0:"
            " the exact frame on screen (bench/README.md, decode modes)."
        ),
    )
    decode_skip_nonref: bool = Field(
        default=True,
        description="Skip decoding unreferenced frames before the next window; same frames chosen.",
    )
    decode_skip_loop_filter: bool = Field(
        default=True,
        description=(
            "Skip H.264/HEVC in-loop deblocking: faster decoding, slightly blockier frames that "
            "scaling mostly averages away (bench/README.md, decode modes); off for low-bitrate "
            "sources."
        ),
    )
    decode_queue_per_worker: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Admission: decodes that may wait for a busy worker, per worker; beyond that 503 "
            "before the upload is read. Unset: only MAX_DECODE_WAIT_S bounds the queue, which "
            "absorbs bursts; 0 suits a latency target (bench/README.md, overload)."
        ),
    )
    max_decode_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="Admission: 503 at once when a decode would wait longer for a worker.",
    )
    max_requests_in_flight: int = Field(
        default=64,
        ge=1,
        description="Requests admitted at once (uploading, decoding or queued); beyond it 503.",
    )

    # -- batcher ---------------------------------------------------------------
    max_batch_size: int = Field(default=8, ge=1, le=1024, description="Most clips in one ONNX run.")
    max_delay_ms: float = Field(
        default=5.0,
        ge=0,
        description=(
            "How long a batch waits for more clips after its first, short beside a decode; not at"
            " all when no other admitted request is still uploading or decoding."
        ),
    )
    max_queue: int = Field(
        default=256,
        ge=1,
        description="Clips waiting for inference; a request that does not fit gets 503 at once.",
    )

    # -- segments --------------------------------------------------------------
    segment_window_s: float = Field(
        default=2.0, gt=0, description="Default window length for segments=true (seconds)."
    )
    min_window_s: float = Field(
        default=0.25, gt=0, description="Shortest window a client may ask for."
    )
    max_window_s: float = Field(
        default=600.0, gt=0, description="Longest window a client may ask for."
    )
    max_segments: int = Field(
        default=64,
        ge=1,
        description="Most windows per video; longer videos get longer windows, not more clips.",
    )

    # -- shutdown and retries -------------------------------------------------------
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take to finish before exit.",
    )


class Settings(JobSettings, _ServiceSettings):
    """All knobs of the service: serving's, then the jobs' (``VIDLSTM_JOBS_*``)."""

    model_config = SETTINGS_CONFIG

    @field_validator("providers", mode="before")
    @classmethod
    def _parse_providers(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_providers(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        return split_list(value)

    @model_validator(mode="before")
    @classmethod
    def _read_keys_file(cls, data: Any) -> Any:
        return with_keys_file(data)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if not self.min_window_s <= self.segment_window_s <= self.max_window_s:
            raise ValueError("need min_window_s <= segment_window_s <= max_window_s")
        if self.max_segments + 1 > self.max_queue:
            raise ValueError("max_queue must hold one video's clips: max_segments + 1")
        return self

    @property
    def provider_chain(self) -> tuple[str, ...]:
        """Full ONNX Runtime provider names, most preferred first."""
        return AUTO_PROVIDERS if self.providers == ("auto",) else self.providers

    @property
    def processes(self) -> int:
        """Serving processes to run: the setting, or from the decode workers (the cores by
        default); never more processes than workers."""
        wanted = self.server_processes or default_server_processes(self.decode_workers)
        return max(1, min(wanted, self.decode_workers))

    @property
    def decode_mode(self) -> DecodeMode:
        return DecodeMode(
            tolerance=self.decode_tolerance,
            skip_nonref=self.decode_skip_nonref,
            skip_loop_filter=self.decode_skip_loop_filter,
        )

    @property
    def limits(self) -> Limits:
        return Limits(
            max_pixels=self.max_pixels,
            max_duration_s=self.max_duration_s,
            max_frames=self.max_frames,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()``."""
    return Settings()
