"""``create_app(settings)``: the FastAPI app with its runtime, routes and error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.middleware import RequestContextMiddleware
from service.model import Model
from service.problems import install_problem_handlers
from service.routes import router
from service.runtime import Runtime
from service.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, model: Model | None = None) -> FastAPI:
    """A new app; ``model`` may be passed pre-loaded (``python -m service`` checks it first)."""
    runtime = Runtime(settings or get_settings(), model=model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="vidlstm",
        summary="Classify uploaded videos with a CNN+LSTM served by ONNX Runtime.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.include_router(router)
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics)
    return app
