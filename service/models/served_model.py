"""One model version being served: its ONNX Runtime session, its batcher, its state,
and the requests using it (so that unloading waits for them)."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path

from service.core.errors import InternalError
from service.pipeline.batcher import Batcher
from service.pipeline.inference import Model, ModelInfo


class ModelState(enum.StrEnum):
    LOADING = "loading"  # file read, session made, warming up: not routed to yet
    READY = "ready"
    FAILED = "failed"  # with a reason; retried when the file changes
    DRAINING = "draining"  # removed from the repository: finishing its requests


class ServedModel:
    """A name and version, and what serves it once it is ready."""

    def __init__(self, name: str, version: str, path: Path, signature: tuple[int, int]) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature = signature
        self.state = ModelState.LOADING
        self.reason: str | None = None
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self.sha256: str | None = None
        self.in_flight = 0  # everything holding this version (it unloads at 0)
        self.awaited = 0  # of those, what the batcher may hold a batch open for
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    @property
    def info(self) -> ModelInfo:
        return self.loaded.info

    @property
    def loaded(self) -> Model:
        if self.model is None:
            raise InternalError(f"model {self.name} {self.version} is not loaded")
        return self.model

    @property
    def running_batcher(self) -> Batcher:
        if self.batcher is None:
            raise InternalError(f"model {self.name} {self.version} has no batcher")
        return self.batcher

    def acquire(self, *, awaited: bool = True) -> None:
        """A request starts on this version; it keeps it until :meth:`release`.

        ``awaited``: its clips come soon, so a batch may wait for them (a request);
        not a job, whose decode may take minutes."""
        self.in_flight += 1
        self.awaited += awaited
        self._idle.clear()

    def release(self, *, awaited: bool = True) -> None:
        self.in_flight -= 1
        self.awaited -= awaited
        if self.in_flight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def fail(self, reason: str) -> None:
        self.state = ModelState.FAILED
        self.reason = reason
