"""HTTP routes: ``/classify``, ``/health``, ``/health/live``, ``/metrics``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from service.api.classify import classify, classify_params
from service.api.deps import NO_CHOICE, ApiKeyDep, MetricsKeyDep, ModelChoiceDep, RuntimeDep
from service.api.problem_docs import problem_docs
from service.api.schemas import (
    ClassifyResponse,
    HealthResponse,
    LiveResponse,
    ModelRef,
    ModelStatus,
)
from service.core.errors import OverloadedError
from service.core.lifecycle import Phase
from service.core.settings import Settings

router = APIRouter()

WINDOW_PARAM = "window_s"
TopKQuery = Annotated[
    int | None,
    Query(ge=1, description="Labels in 'top' (default 5; more than the classes gives them all)."),
]
SegmentsQuery = Annotated[
    bool, Query(description="Also classify consecutive windows over the whole video.")
]
WindowQuery = Annotated[
    float | None,
    Query(
        alias=WINDOW_PARAM,
        gt=0,
        description="Window length for segments (seconds); implies segments=true.",
    ),
]


# An empty file is refused (400 no-file), so the document says at least one byte.
NON_EMPTY_FILE: dict[str, Any] = {"type": "string", "format": "binary", "minLength": 1}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The video: a multipart 'file' field, or the raw bytes.",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": NON_EMPTY_FILE},
                }
            },
            "video/*": {"schema": NON_EMPTY_FILE},
            "application/octet-stream": {"schema": NON_EMPTY_FILE},
        },
    }
}


@router.post(
    "/classify",
    summary="Classify an uploaded video",
    response_model=ClassifyResponse,
    responses=problem_docs(400, 401, 404, 408, 413, 414, 415, 422, 431, 500, 503, 504),
    openapi_extra=UPLOAD_BODY,
)
async def classify_video(
    request: Request,
    *,
    runtime: RuntimeDep,
    _auth: ApiKeyDep,
    top_k: TopKQuery = None,
    segments: SegmentsQuery = False,
    window_s: WindowQuery = None,
    choice: ModelChoiceDep = NO_CHOICE,
) -> ClassifyResponse:
    async with runtime.lifecycle.work(), runtime.models.use(*choice) as served:
        params = classify_params(
            runtime.settings, served.info, top_k=top_k, segments=segments, window_s=window_s
        )
        if runtime.decode_pool.full:
            # Before reading a byte: the upload would only wait for a worker.
            raise OverloadedError("every decode worker is busy; retry shortly")
        return await classify(request, runtime, served, params)


def with_setting_bounds(schema: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """``schema`` with ``window_s``'s bounds filled in from ``settings`` (they are the
    deployment's, not the code's), so that a generated client never sends one refused."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []):
                if param.get("name") != WINDOW_PARAM:
                    continue
                for option in param["schema"].get("anyOf", [param["schema"]]):
                    if option.get("type") == "number":
                        option.pop("exclusiveMinimum", None)
                        option["minimum"] = settings.min_window_s
                        option["maximum"] = settings.max_window_s
    return schema


@router.get(
    "/health",
    summary="Readiness: 200 when the model is warmed up and work is accepted",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Starting, draining or failed."}},
)
async def health(runtime: RuntimeDep) -> JSONResponse:
    lifecycle = runtime.lifecycle
    default = runtime.models.default()
    body = HealthResponse(
        status=lifecycle.phase.value,
        model=ModelRef(name=default.name, version=default.version) if default else None,
        provider=default.loaded.provider if default else None,
        in_flight=lifecycle.in_flight,
        models=[
            ModelStatus(name=v.name, version=v.version, state=v.state.value)
            for v in runtime.models.listing()
        ],
    )
    if lifecycle.ready and default is not None:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "2"})


@router.get(
    "/health/live",
    summary="Liveness: the process answers (503 only if start-up failed)",
    response_model=LiveResponse,
)
async def live(runtime: RuntimeDep) -> JSONResponse:
    if runtime.lifecycle.phase is Phase.FAILED:
        return JSONResponse({"status": "failed"}, status_code=503)
    return JSONResponse(LiveResponse().model_dump())


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **problem_docs(401)},
)
async def metrics(runtime: RuntimeDep, _auth: MetricsKeyDep) -> Response:
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
