"""Whether the server takes work: starting -> ready -> draining -> stopped.

Readiness (``/health``) and admission (``/classify``) both read this one
state, so they can never disagree. Draining counts the requests still being
served so shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable

from service.core.errors import DrainingError, OverloadedError, StartingError, UnavailableError


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Lifecycle:
    """The server's phase and its requests in flight."""

    def __init__(
        self, *, max_in_flight: int, on_count: Callable[[int], None] | None = None
    ) -> None:
        """``on_count`` is told the number in flight each time it changes (a gauge)."""
        self.phase = Phase.STARTING
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._on_count = on_count
        self.failure: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.phase is Phase.READY

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    def mark_ready(self) -> None:
        if self.phase is Phase.STARTING:
            self.phase = Phase.READY

    def mark_failed(self, reason: str) -> None:
        self.phase = Phase.FAILED
        self.failure = reason

    def begin_drain(self) -> None:
        """``/health`` turns 503 at once; requests are still admitted (see
        :meth:`check_admission`) until the server stops."""
        if self.phase in (Phase.STARTING, Phase.READY):
            self.phase = Phase.DRAINING

    def mark_stopped(self) -> None:
        self.phase = Phase.STOPPED

    def check_admission(self) -> None:
        """Raise the 503 a new request gets now, if any.

        Draining admits too: the server has stopped listening by then, so a request
        can only come on a connection accepted before (a load balancer's, sent before
        it learnt), and refusing it would fail it where nothing can replay it.
        Its answer closes the connection, so no further request follows on it.
        """
        if self.phase in (Phase.READY, Phase.DRAINING):
            if self.in_flight >= self.max_in_flight:
                raise OverloadedError(f"{self.in_flight} requests in flight; retry shortly")
            return
        if self.phase is Phase.STARTING:
            raise StartingError("the model is still loading and warming up")
        if self.phase is Phase.FAILED:
            raise UnavailableError("the server failed to start")
        raise DrainingError("the server is shutting down; retry on another instance")

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[None]:
        """Admit one request (or raise 503) and count it until it is answered."""
        self.check_admission()
        self._count(+1)
        self._idle.clear()
        try:
            yield
        finally:
            self._count(-1)
            if self.in_flight == 0:
                self._idle.set()

    def _count(self, step: int) -> None:
        self.in_flight += step
        if self._on_count is not None:
            self._on_count(self.in_flight)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
