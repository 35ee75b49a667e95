"""``create_app(settings)``: the FastAPI app with its runtime, routes and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from service.api.jobs import router as jobs_router
from service.api.middleware import RequestContextMiddleware
from service.api.models import router as models_router
from service.api.page import page_router
from service.api.problems import install_problem_handlers
from service.api.routes import router, with_setting_bounds
from service.core.runtime import Runtime
from service.core.settings import Settings, get_settings
from service.jobs.queue import JobQueue
from service.pipeline.decode_pool import DecodeHook
from service.pipeline.inference import Model


def create_app(
    settings: Settings | None = None,
    *,
    model: Model | None = None,
    decode_hook: DecodeHook | None = None,
    serve_when_ready: bool = False,
) -> FastAPI:
    """A new app; ``model`` may be passed pre-loaded (``python -m service`` checks it first).

    ``serve_when_ready``: start-up ends only once warmed up, so the server accepts no
    connection before (a serving process beside others that are ready).

    ``decode_hook`` is for tests: a module-level function run in the decode worker
    with the upload's path before each decode (fault injection). Code, not a
    setting, so that no deployment can make the server import a module by name.
    """
    runtime = Runtime(settings or get_settings(), model=model, decode_hook=decode_hook)
    jobs_dir = runtime.settings.jobs_dir
    jobs = JobQueue(runtime, jobs_dir) if jobs_dir is not None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if jobs is not None:
            await jobs.open()
        if serve_when_ready:
            await runtime.wait_ready()
        try:
            yield
        finally:
            if jobs is not None:  # submits finish first; running jobs go back to the queue
                await runtime.drain()
                await jobs.close()
            await runtime.stop()

    app = FastAPI(
        title="vidlstm",
        summary="Classify uploaded videos with a CNN+LSTM served by ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.jobs = jobs
    app.include_router(router)
    app.include_router(models_router)
    app.include_router(jobs_router)
    _bound_schema(app, runtime.settings)
    app.include_router(page_router)
    install_problem_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, metrics=runtime.metrics, lifecycle=runtime.lifecycle
    )
    return app


def _bound_schema(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document carries the deployment's bounds (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_setting_bounds(build(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
