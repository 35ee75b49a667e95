"""Route dependencies as ``Annotated`` aliases, so handlers read as typed functions.

All ``async def``, though none awaits: FastAPI runs a plain ``def`` dependency on
a worker thread, three thread hops per request for nothing (bench/README.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from service.api.auth import check_api_key
from service.core.runtime import Runtime
from service.core.settings import Settings


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_app_settings(runtime: RuntimeDep) -> Settings:
    return runtime.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def require_api_key(request: Request, settings: SettingsDep) -> str:
    """401 unless the request carries a configured API key (no keys: open); the client's
    identity (its key's hash, ``""`` without keys): whose jobs it may see."""
    return check_api_key(settings.api_keys, request.headers)


async def require_api_key_for_metrics(request: Request, settings: SettingsDep) -> None:
    if settings.protect_metrics:
        check_api_key(settings.api_keys, request.headers)


ApiKeyDep = Annotated[str, Depends(require_api_key)]
ClientDep = ApiKeyDep  # the same check, read for its value
MetricsKeyDep = Annotated[None, Depends(require_api_key_for_metrics)]


ModelQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="A model by name (GET /models); unset: the default model.",
    ),
]
VersionQuery = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="A version of that model; unset: its highest ready version.",
    ),
]
ModelChoice = tuple[str | None, str | None]
NO_CHOICE: ModelChoice = (None, None)


async def model_choice(model: ModelQuery = None, version: VersionQuery = None) -> ModelChoice:
    """Which model and version the request asks for (``?model=&version=``)."""
    return model, version


ModelChoiceDep = Annotated[ModelChoice, Depends(model_choice)]
