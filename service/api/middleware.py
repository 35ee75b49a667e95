"""Per-request context: request id, one JSON log line, request metrics, last-resort 500,
and ``Connection: close`` on answers given while draining.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so uploads keep streaming.
It also refuses oversized request heads (414, 431), which uvicorn's httptools
parser accepts without a limit; the limits are nginx's defaults, so a request
that passes the load balancer passes here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem_response
from service.core.errors import ClientError, HeadersTooLargeError, InternalError, UriTooLongError
from service.core.lifecycle import Lifecycle
from service.core.logs import request_id_var
from service.core.metrics import Metrics

log = logging.getLogger("service.access")

REQUEST_ID_HEADER = "X-Request-ID"
# nginx's large_client_header_buffers default (4 x 8k): one line, and all header fields.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
# What we accept from a client (or a proxy) as a request id; anything else is replaced.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id_from(scope: Scope) -> str:
    """The client's ``X-Request-ID`` if it is sane, else a fresh one."""
    for key, value in scope.get("headers", ()):
        if key == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def oversized_head(scope: Scope) -> ClientError | None:
    """The 414 or 431 a request head over the limits gets, or None."""
    target = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(
        scope.get("query_string", b"")
    )
    if target > MAX_TARGET_BYTES:
        return UriTooLongError(f"the request target is over {MAX_TARGET_BYTES} bytes")
    fields = sum(len(key) + len(value) + 4 for key, value in scope.get("headers", ()))
    if fields > MAX_HEADER_BYTES:
        return HeadersTooLargeError(f"the header fields are over {MAX_HEADER_BYTES} bytes")
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, lifecycle: Lifecycle) -> None:
        self.app = app
        self.metrics = metrics
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                if self.lifecycle.draining:  # no next request on this connection
                    headers["Connection"] = "close"
            await send(message)

        try:
            if (refusal := oversized_head(scope)) is not None:
                self.metrics.rejections.labels(reason=refusal.slug).inc()
                await problem_response(refusal)(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if started:
                raise
            self.metrics.rejections.labels(reason=InternalError.slug).inc()
            await problem_response(InternalError())(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(route=path, method=method, status=str(status)).inc()
            self.metrics.latency.labels(route=path).observe(elapsed)
            log.info(
                "%s %s %d",
                method,
                scope.get("path", ""),
                status,
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)
