"""Response bodies, as pydantic models so ``/openapi.json`` documents them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelRef(BaseModel):
    name: str
    version: str


class VideoSummary(BaseModel):
    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    container: str
    frames_used: int = Field(description="Frames sampled for the whole-video prediction (T).")
    frames_decoded: int = Field(description="Frames the decoder produced to sample them.")


class LabelScore(BaseModel):
    label: str
    score: float


class Segment(BaseModel):
    start_s: float
    end_s: float
    top: list[LabelScore]


class Timing(BaseModel):
    upload: float = Field(description="Receiving the upload, ms.")
    decode: float = Field(description="Decode & sample in a worker process, ms.")
    queue: float = Field(description="Waiting for a batch to run, ms.")
    inference: float = Field(description="From the first ONNX run of this request to its last, ms.")
    total: float = Field(description="The whole request, ms.")


class ClassifyResponse(BaseModel):
    model: ModelRef
    video: VideoSummary
    top: list[LabelScore]
    probabilities: dict[str, float] = Field(description="Every label's probability; they sum to 1.")
    segments: list[Segment] | None = Field(
        None, description="Per-window results, with segments=true."
    )
    window_s: float | None = Field(
        None, description="Window length used for segments (stretched on long videos)."
    )
    timing_ms: Timing


class ModelStatus(BaseModel):
    name: str
    version: str
    state: str = Field(description="loading, ready, failed or draining.")


class HealthResponse(BaseModel):
    status: str = Field(description="starting, ready, draining, stopped or failed.")
    model: ModelRef | None = Field(None, description="The default model's version in use.")
    provider: str | None = Field(None, description="The ONNX Runtime execution provider in use.")
    in_flight: int = 0
    models: list[ModelStatus] = Field(default_factory=list, description="Every version known.")


class LiveResponse(BaseModel):
    status: str = "alive"


class InputGeometry(BaseModel):
    num_frames: int
    height: int
    width: int
    channels: int = 3
    dtype: str = "uint8"
    layout: str = "NTHWC"


class ModelResponse(BaseModel):
    name: str
    version: str
    labels: list[str]
    input: InputGeometry
    sampling: str
    data_fingerprint: str
    created: str
    metrics: dict[str, Any]
    metadata: dict[str, str] = Field(description="Every metadata_props entry of the file.")
    provider: str
    providers: list[str]


class ModelVersion(BaseModel):
    name: str
    version: str
    state: str = Field(description="loading, ready, failed or draining.")
    reason: str | None = Field(None, description="Why it failed to load (failed only).")
    default: bool = Field(description="Whether requests without ?model=&version= get it.")
    labels: list[str] | None = None
    input: InputGeometry | None = None
    sha256: str | None = Field(None, description="The model file's SHA-256.")
    provider: str | None = None
    in_flight: int = Field(description="Requests using it now.")


class ModelsResponse(BaseModel):
    default: str | None = Field(description="The model requests get without ?model=.")
    models: list[ModelVersion]


class Problem(BaseModel):
    """An ``application/problem+json`` body (RFC 9457)."""

    type: str = Field(description="Stable URI naming the kind of problem.")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="URN naming this request.")
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="Which parameters were invalid (422 invalid-parameter only)."
    )
