"""Errors to ``application/problem+json`` (RFC 9457), in one place.

Domain errors carry their status and stable ``type``; FastAPI's validation
errors become 422 ``invalid-parameter`` and Starlette's routing errors (404,
405) keep their status. A 500 says only that something failed on our side and
names the request id to quote; the details go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.core.errors import (
    InternalError,
    ParameterError,
    RoutingError,
    UnauthorizedError,
    UnavailableError,
    VidlstmError,
)
from service.core.logs import request_id_var

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_HTTP_SLUGS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
}


def problem_body(err: VidlstmError, **extra: Any) -> dict[str, Any]:
    """The RFC 9457 members of ``err``; ``instance`` names this request."""
    request_id = request_id_var.get()
    body: dict[str, Any] = dict(err.problem())
    if request_id is not None:
        body["instance"] = f"urn:vidlstm:request:{request_id}"
        body["request_id"] = request_id
    body.update(extra)
    return body


def problem_response(
    err: VidlstmError, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    all_headers = dict(headers or {})
    if isinstance(err, UnavailableError):
        all_headers["Retry-After"] = str(err.retry_after_s)
    if isinstance(err, UnauthorizedError):
        all_headers["WWW-Authenticate"] = 'Bearer realm="vidlstm"'
    return JSONResponse(
        problem_body(err, **extra),
        status_code=err.status,
        headers=all_headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, VidlstmError)
    if isinstance(exc, InternalError):
        log.error("internal error: %s", exc.detail, exc_info=exc)
    _count(request, exc)
    return problem_response(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    err = ParameterError("the request parameters are invalid")
    # loc/msg/type only: the offending input is the client's own and may be large.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    _count(request, err)
    return problem_response(err, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug, title = _HTTP_SLUGS.get(exc.status_code, (f"http-{exc.status_code}", "HTTP error"))
    err = RoutingError(exc.status_code, title, slug)
    _count(request, err)
    return problem_response(err, headers=dict(exc.headers or {}))


def _count(request: Request, err: VidlstmError) -> None:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.metrics.rejections.labels(reason=err.slug).inc()


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VidlstmError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
