"""uvicorn, with a drain on SIGTERM: no new connections, requests finish, exit 0.

uvicorn on its own stops accepting connections the moment SIGTERM arrives, then
waits at most ``timeout_graceful_shutdown`` and re-raises the signal, so the
process dies by it. Here the drain stops listening and closes idle connections
at once (a load balancer's next connect is refused and goes elsewhere; a request
on a connection already open is still served, then its connection closed), waits
for requests in flight up to ``VIDLSTM_DRAIN_TIMEOUT_S``, then exits 0. A second signal exits
at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.app import create_app
from service.core.errors import StartupError
from service.core.lifecycle import Phase
from service.core.logs import configure_logging
from service.core.runtime import Runtime, preflight
from service.core.settings import Settings, get_settings
from service.pipeline.decode_pool import DecodeHook
from service.serving_process import Child
from service.supervisor import Supervisor

log = logging.getLogger(__name__)


class UncopiedBodyProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, handing request body chunks to the app uncopied.

    Since 0.42, uvicorn gathers each connection's body chunks in a ``bytearray``
    and copies it into ``bytes`` for every ASGI ``http.request`` message: two
    copies of every uploaded byte on the event loop, which also receives
    everyone else's uploads. When nothing is waiting to be read, this hands the
    chunk httptools made over as it is (``bytes(b)`` of a ``bytes`` object is
    that object); chunks that arrive while one waits are joined as before, and
    reading still pauses above uvicorn's high-water mark. It relies on uvicorn's
    private ``HttpToolsProtocol``: pyproject.toml pins the range it is written for.
    """

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if not cycle.body:
            # The chunk becomes the pending body; uvicorn's own handling (checks,
            # flow control, wake-up) then runs with nothing more to append.
            cycle.body = body  # type: ignore[assignment]
            body = b""
        super().on_body(body)


# After the drain, connections only have responses left to write.
CLOSE_TIMEOUT_S = 5


class DrainingServer(uvicorn.Server):
    """``parent_pid``: a supervisor's; when it is gone, the server drains and exits."""

    def __init__(
        self, config: uvicorn.Config, runtime: Runtime, *, parent_pid: int | None = None
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.parent_pid = parent_pid
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started or self._loop is None or self._drain is not None:
            super().handle_exit(sig, frame)  # not serving yet, or a second signal: stop now
            if self._drain is not None:
                self.force_exit = True
            return
        log.info("signal %d: draining", sig)
        # Not recorded as captured: uvicorn would re-raise it and we would not exit 0.
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._drain is None:
            self._stop_listening()
            self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit())

    def _stop_listening(self) -> None:
        """New connections are refused from now on, and idle kept-alive ones closed, so a
        load balancer's next attempt goes to another replica (a refused connect is the
        one failure it may retry with any request, a streamed upload included). Requests
        in flight finish; their connections close after the answer."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()

    async def _drain_then_exit(self) -> None:
        await self.runtime.drain()
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.runtime.lifecycle.phase is Phase.FAILED:
            return True
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("the supervisor is gone: draining")
            self.parent_pid = None
            self._begin_drain()
        return await super().on_tick(counter)


def uvicorn_config(app: FastAPI, **options: Any) -> uvicorn.Config:
    """How uvicorn runs the app (the tests' servers too); ``options`` add to it."""
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        ws="none",
        http=UncopiedBodyProtocol,
        timeout_graceful_shutdown=CLOSE_TIMEOUT_S,
        **options,
    )


def serve(
    settings: Settings,
    *,
    decode_hook: DecodeHook | None = None,
    sockets: list[socket.socket] | None = None,
    parent_pid: int | None = None,
    on_preflight: Callable[[], object] | None = None,
) -> int:
    """Run the service until it is stopped; returns the process exit code.

    ``decode_hook``: see :func:`service.app.create_app` (tests only). The rest is
    for a serving process under :mod:`service.supervisor`: the listening socket
    it shares, the supervisor's pid, and a call once the model has loaded. Such a
    process accepts only once warmed up; its siblings serve meanwhile.
    """
    try:
        model = preflight(settings)
    except StartupError as err:
        log.error("cannot start: %s", err)
        return 2
    if on_preflight is not None:
        on_preflight()
    app = create_app(
        settings, model=model, decode_hook=decode_hook, serve_when_ready=sockets is not None
    )
    runtime: Runtime = app.state.runtime
    config = uvicorn_config(app, host=settings.host, port=settings.port)
    DrainingServer(config, runtime, parent_pid=parent_pid).run(sockets=sockets)
    if runtime.lifecycle.phase is Phase.FAILED:
        log.error("stopped: %s", runtime.lifecycle.failure)
        return 1
    return 0


def serve_process(child: Child) -> None:
    """One serving process under the supervisor (its spawn target)."""
    child.prepare()
    code = serve(
        child.settings,
        decode_hook=child.decode_hook,
        sockets=[child.sock],
        parent_pid=child.parent_pid,
        on_preflight=child.preflight_passed.set,
    )
    sys.exit(code)


def main(*, decode_hook: DecodeHook | None = None) -> None:
    """``python -m service``; ``decode_hook`` for the tests' fault-injecting server only."""
    try:
        settings = get_settings()
    except ValidationError as err:
        print(f"vidlstm: invalid settings (VIDLSTM_*):\n{err}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_level)
    if settings.processes > 1:
        sys.exit(Supervisor(settings, serve_process, decode_hook=decode_hook).run())
    sys.exit(serve(settings, decode_hook=decode_hook))
