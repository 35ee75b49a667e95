"""Model routes: ``GET /model`` (one version in full) and ``GET /models`` (every version)."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import NO_CHOICE, ApiKeyDep, ModelChoiceDep, RuntimeDep
from service.api.problem_docs import problem_docs
from service.api.schemas import InputGeometry, ModelResponse, ModelsResponse, ModelVersion
from service.models.served_model import ServedModel
from service.pipeline.inference import ModelInfo

router = APIRouter()


@router.get(
    "/model",
    summary="A model's labels, input geometry, metadata and execution provider",
    response_model=ModelResponse,
    responses=problem_docs(401, 404, 422, 503),
)
async def model(
    runtime: RuntimeDep, _auth: ApiKeyDep, choice: ModelChoiceDep = NO_CHOICE
) -> ModelResponse:
    served = runtime.models.resolve(*choice)
    m = served.loaded
    info = m.info
    return ModelResponse(
        name=info.name,
        version=info.version,
        labels=list(info.labels),
        input=_geometry(info),
        sampling=info.sampling,
        data_fingerprint=info.data_fingerprint,
        created=info.created,
        metrics=info.metrics,
        metadata=info.metadata,
        provider=m.provider,
        providers=list(m.providers),
    )


@router.get(
    "/models",
    summary="Every model version known: state (loading, ready, failed + reason), labels, hash",
    response_model=ModelsResponse,
    responses=problem_docs(401),
)
async def models(runtime: RuntimeDep, _auth: ApiKeyDep) -> ModelsResponse:
    registry = runtime.models
    default = registry.default()
    return ModelsResponse(
        default=registry.default_name,
        models=[_entry(v, default=v is default) for v in registry.listing()],
    )


def _entry(served: ServedModel, *, default: bool) -> ModelVersion:
    model = served.model
    return ModelVersion(
        name=served.name,
        version=served.version,
        state=served.state.value,
        reason=served.reason,
        default=default,
        labels=list(model.info.labels) if model else None,
        input=_geometry(model.info) if model else None,
        sha256=served.sha256,
        provider=model.provider if model else None,
        in_flight=served.in_flight,
    )


def _geometry(info: ModelInfo) -> InputGeometry:
    return InputGeometry(num_frames=info.num_frames, height=info.height, width=info.width)
