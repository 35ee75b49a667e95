"""Service settings: one object, read once from ``VIDLSTM_*`` environment variables.

Everything about the model itself (labels, geometry, sampling) comes from the
ONNX file's metadata, never from here: nothing is configured twice.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.decode import DecodeMode
from service.video import DEFAULT_MAX_PIXELS, Limits

MiB = 1024 * 1024

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
AUTO_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _cpu_count() -> int:
    # The CPUs this process may run on (a container's quota), not the host's.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` or a JSON list from the environment, or a real sequence."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All knobs of the service; see each field's description for the default's reason."""

    # Inputs stay out of error messages: they may hold API keys.
    model_config = SettingsConfigDict(
        env_prefix="VIDLSTM_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    # -- model and execution -------------------------------------------------
    model_path: Path = Field(
        default=Path("models/vidlstm.onnx"),
        description="The exported .onnx file; labels, geometry and sampling come from it.",
    )
    providers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("auto",),
        description=(
            "ONNX Runtime execution providers in order of preference: 'auto' (CUDA if it "
            "really loads, else CPU) or a list of cpu, cuda, tensorrt. A list without cpu "
            "makes start-up fail when none of them loads."
        ),
    )
    cuda_tf32: bool = Field(
        default=False,
        description=(
            "Let the CUDA provider round float32 convolutions and matrix products to TF32 "
            "on tensor cores. Off keeps full float32: on an H200 the shipped model's "
            "probabilities then match the CPU's within 1e-3, which TF32 misses "
            "(bench/README.md, GPU)."
        ),
    )
    intra_op_threads: int = Field(
        default=1,
        ge=0,
        description=(
            "ONNX Runtime intra-op threads per run; 0 lets ONNX Runtime use every core. One: "
            "the decode workers already keep every core busy, and a batch on one thread cost "
            "3.1 ms CPU per clip against 8.4 ms on ORT's spinning all-core pool (2-core "
            "machine under load, bench/README.md). Raise it for big models on idle CPUs."
        ),
    )

    # -- HTTP ----------------------------------------------------------------
    host: str = Field(
        default="127.0.0.1", description="Interface to listen on (0.0.0.0 in a container)."
    )
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port to listen on.")
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description=(
            "Accepted API keys (comma-separated). Empty: no authentication. Clients send "
            "'Authorization: Bearer KEY' or 'X-API-Key: KEY'."
        ),
    )
    api_keys_file: Path | None = Field(
        default=None,
        description=(
            "A file of accepted API keys, one per line (blank lines and '#' comments "
            "ignored), e.g. a mounted secret; added to api_keys. Read at start-up."
        ),
    )
    protect_metrics: bool = Field(
        default=False, description="Require an API key for /metrics too (health probes stay open)."
    )
    log_level: str = Field(default="info", description="Python logging level of the JSON logs.")

    # -- upload ----------------------------------------------------------------
    max_upload_bytes: int = Field(
        default=256 * MiB,
        ge=1,
        description=(
            "Largest request body accepted, enforced while streaming. 256 MiB holds about "
            "10 minutes of 1080p H.264 at 3 Mbit/s; longer videos should be trimmed by clients."
        ),
    )
    temp_dir: Path = Field(
        default=Path(tempfile.gettempdir()),
        description="Where uploads are spooled while they are decoded; removed right after.",
    )
    upload_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest pause between two pieces of an upload before it is refused (408): a "
            "client that stops sending must not hold a request slot."
        ),
    )
    upload_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Longest time one upload may take (408): the 256 MiB cap at 3.5 Mbit/s. Stops a "
            "client that trickles bytes just often enough to pass the idle timeout."
        ),
    )

    # -- limits checked before decoding --------------------------------------
    max_pixels: int = Field(
        default=DEFAULT_MAX_PIXELS,
        ge=1,
        description=(
            "Largest frame (width x height). 4096x4096 is the cap FFmpeg's own fuzzers use; "
            "Pillow already treats ~179 Mpx as a decompression bomb."
        ),
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
        default_factory=_cpu_count,
        ge=1,
        description="Decode worker processes; default one per CPU core this process may use.",
    )
    decode_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Wall time one decode may take before its worker is killed (504). Seeking "
            "sampling decodes a 3 h video in a few seconds; 30 s only stops pathological files."
        ),
    )
    decode_tolerance: float = Field(
        default=0.5,
        ge=0,
        le=0.5,
        description=(
            "How far (in segments) a sampled frame may lie from its segment's centre; the "
            "decoder takes the cheapest frame within it, often a keyframe. 0.5 = anywhere in "
            "the segment, which is what TSN sampling means; 0 = the exact frame on screen. "
            "At 0.5 the top class is the one exact frames give on 98% of test videos "
            "(95.7% against 95.7% accuracy), and a 10-min video decodes 15x, a short-GOP "
            "clip 3x faster (bench/README.md); 0.25 keeps 98% agreement."
        ),
    )
    decode_skip_nonref: bool = Field(
        default=True,
        description=(
            "Leave frames that nothing references undecoded while they lie before the next "
            "sample's window; the same frames are chosen as without it (constant frame rate)."
        ),
    )
    decode_skip_loop_filter: bool = Field(
        default=True,
        description=(
            "Skip the in-loop deblocking filter (H.264, HEVC): 10-20% faster decoding, "
            "slightly blockier frames, which the scaling to the model's size mostly averages "
            "away: top class as with the filter on 99.5% of test videos (95.1% against 95.7% "
            "accuracy; bench/README.md). Turn it off for low-bitrate sources."
        ),
    )
    decode_queue_per_worker: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Admission: decodes that may wait for a busy worker, per worker; a request "
            "beyond that gets 503 + Retry-After at once, before its upload is read. Unset, "
            "only MAX_DECODE_WAIT_S bounds the queue, which absorbs bursts on a lone "
            "replica. For a latency target set 0 (admit only while a worker is free): at "
            "4x overload admitted requests kept their p99 within 1.5x of the unloaded p99, "
            "against 3.3x at 1 (bench/overload.py). Behind nginx, its max_fails counts "
            "these 503s as replica failures."
        ),
    )
    max_decode_wait_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Admission: a request whose decode would wait longer than this for a worker "
            "(estimated from the decodes ahead of it and recent decode times) gets 503 at "
            "once, before its upload is read; a cap for deep queues of long videos."
        ),
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
            "How long a batch waits for more clips after its first one. 5 ms is small beside "
            "a decode (tens of ms) yet lets concurrent requests share a run."
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
        description=(
            "Most windows per video; a longer video gets proportionally longer windows, so a "
            "request never costs more than this many clips."
        ),
    )

    # -- shutdown and retries -------------------------------------------------------
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take to finish before exit.",
    )

    # -- tests only ----------------------------------------------------------------
    debug_decode_hook: str | None = Field(
        default=None,
        description=(
            "Tests only: 'module:function' called with the upload's path in the decode "
            "worker before each decode (fault injection). Off by default."
        ),
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _parse_providers(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("providers")
    @classmethod
    def _check_providers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = [v.strip() for v in value]
        if not names or names == ["auto"]:
            return ("auto",)
        known = {**PROVIDER_NAMES, **{v.lower(): v for v in PROVIDER_NAMES.values()}}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise ValueError(f"unknown providers {unknown}; use auto or {sorted(PROVIDER_NAMES)}")
        return tuple(dict.fromkeys(known[n.lower()] for n in names))

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: Any) -> Any:
        return _split_list(value)

    @model_validator(mode="before")
    @classmethod
    def _read_keys_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("api_keys_file"):
            return data
        path = Path(data["api_keys_file"])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or type(err).__name__
            raise ValueError(f"api_keys_file {path} cannot be read: {reason}") from err
        stripped = (line.strip() for line in lines)
        keys = [key for key in stripped if key and not key.startswith("#")]
        if not keys:
            raise ValueError(f"api_keys_file {path} holds no key")
        return {**data, "api_keys": [*_split_list(data.get("api_keys") or []), *keys]}

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
