"""The models a server serves, by name and version, kept in step with a repository.

With ``VIDLSTM_MODEL_REPOSITORY`` the registry scans ``DIR/<name>/<version>/model.onnx``
every ``VIDLSTM_MODEL_POLL_S``. A version that appears is loaded, checked (the
metadata contract, a warm-up run at each batch size) and only then routed to; the
versions already serving go on meanwhile (no unload before load, Triton's #2076).
One that fails to load is ``failed`` with the reason, and retried when its file
changes. One that disappears stops being routed to, finishes the requests that
started on it (each keeps the session it started with) and is then unloaded.
Without a repository, ``VIDLSTM_MODEL_PATH`` is a repository of one version, named
and versioned by its own metadata.

A request names a model and optionally a version; neither: the default model's
highest ready version.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from service.core.errors import ModelNotFoundError, ModelUnavailableError, StartupError
from service.core.metrics import Metrics
from service.core.settings import Settings
from service.models.repository import VersionFile, scan, sha256_of, version_key
from service.models.served_model import ModelState, ServedModel
from service.pipeline.batcher import Batcher
from service.pipeline.inference import Model, load_model

log = logging.getLogger(__name__)

Key = tuple[str, str]


class ModelRegistry:
    """Every version known, its state, and which one a request gets."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self._metrics = metrics
        self._versions: dict[Key, ServedModel] = {}
        self.default_name: str | None = settings.default_model
        self._poller: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def repository(self) -> Path | None:
        return self.settings.model_repository

    # -- which version a request gets -------------------------------------------

    def resolve(self, name: str | None = None, version: str | None = None) -> ServedModel:
        """The version to serve: 404 for a name or version never seen, 503 if not ready."""
        name = name or self.default_name
        versions = [v for (n, _), v in self._versions.items() if n == name]
        if not versions:
            raise ModelNotFoundError(f"no model named {name!r}; GET /models lists them")
        if version is not None:
            chosen = self._versions.get((name or "", version))
            if chosen is None:
                raise ModelNotFoundError(f"model {name!r} has no version {version!r}")
            if not chosen.ready:
                raise ModelUnavailableError(_not_ready(chosen))
            return chosen
        ready = [v for v in versions if v.ready]
        if not ready:
            raise ModelUnavailableError(f"model {name!r} has no ready version yet")
        return max(ready, key=lambda v: version_key(v.version))

    def default(self) -> ServedModel | None:
        """The default model's version a request would get now, if any."""
        try:
            return self.resolve()
        except (ModelNotFoundError, ModelUnavailableError):
            return None

    @contextlib.asynccontextmanager
    async def use(
        self, name: str | None, version: str | None, *, awaited: bool = True
    ) -> AsyncIterator[ServedModel]:
        """Hold a version for one request: it is not unloaded until the request ends.

        ``awaited=False`` (a job): the batcher does not hold batches open for it."""
        served = self.resolve(name, version)
        served.acquire(awaited=awaited)
        self._metrics.model_requests.labels(model=served.name, version=served.version).inc()
        try:
            yield served
        finally:
            served.release(awaited=awaited)

    def listing(self) -> list[ServedModel]:
        """Every version known, by name and then version."""
        return sorted(self._versions.values(), key=lambda v: (v.name, version_key(v.version)))

    # -- start-up and shutdown ----------------------------------------------------

    async def start(self, preloaded: Model | None = None) -> None:
        """Load what the repository (or the single file) holds; warm-ups come after.

        :class:`StartupError` if the default model ends up with no loaded version.
        """
        if self.repository is None:
            await self._start_single(preloaded)
        else:
            await self._start_repository(self.repository)
        name = self.default_name
        if not any(v.model is not None for (n, _), v in self._versions.items() if n == name):
            failures = "; ".join(f"{v.name} {v.version}: {v.reason}" for v in self.listing())
            raise StartupError(f"no version of the default model {name!r} loads ({failures})")

    async def _start_single(self, preloaded: Model | None) -> None:
        s = self.settings
        model = preloaded
        if model is None:
            model = await asyncio.to_thread(load_file, s, s.model_path)
        info, path = model.info, s.model_path
        try:
            stat = path.stat()
            sha256: str | None = await asyncio.to_thread(sha256_of, path)
        except OSError:  # a model handed over in memory (tests, embedders)
            stat, sha256 = None, None
        signature = (stat.st_size, stat.st_mtime_ns) if stat else (0, 0)
        served = ServedModel(info.name, info.version, path, signature)
        served.sha256 = sha256
        self._attach(served, model)
        self._versions[(served.name, served.version)] = served
        self.default_name = info.name

    async def _start_repository(self, root: Path) -> None:
        if not root.is_dir():
            raise StartupError(f"model repository {root} is not a directory")
        found = await asyncio.to_thread(scan, root)
        names = sorted({name for name, _ in found})
        if self.default_name is None:
            if len(names) != 1:
                raise StartupError(
                    f"model repository {root} holds {len(names)} models ({', '.join(names)}); "
                    "set VIDLSTM_DEFAULT_MODEL to the one requests get without ?model="
                )
            self.default_name = names[0]
        for key, file in sorted(found.items()):
            served = ServedModel(file.name, file.version, file.path, file.signature)
            self._versions[key] = served
            await self._open(served)

    async def warm_up(self) -> None:
        """Warm up every loaded version; each is routed to once it has warmed up."""
        loading = [v for v in self._versions.values() if v.state is ModelState.LOADING]
        await asyncio.gather(*(self._warm(v) for v in loading if v.model is not None))

    def watch(self) -> None:
        """Follow the repository from now on (nothing to follow for a single file)."""
        if self.repository is not None and self._poller is None:
            self._poller = asyncio.create_task(self._poll(self.repository), name="model-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for served in self._versions.values():
            if served.batcher is not None:
                await served.batcher.stop()

    # -- following the repository ------------------------------------------------

    async def _poll(self, root: Path) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.reconcile(root)
            except Exception:  # the poller must outlive a bad scan
                log.exception("model repository scan failed")

    async def reconcile(self, root: Path) -> None:
        """One scan: load what appeared (or changed after failing), drain what went."""
        found = await asyncio.to_thread(scan, root)
        for key, file in sorted(found.items()):
            known = self._versions.get(key)
            if known is None or (known.state is ModelState.FAILED and _changed(known, file)):
                served = ServedModel(file.name, file.version, file.path, file.signature)
                self._versions[key] = served
                self._spawn(self._load(served), f"load-{file.name}-{file.version}")
        for key, served in list(self._versions.items()):
            if key not in found and served.state is not ModelState.DRAINING:
                if served.state is ModelState.LOADING:
                    continue  # its load finishes first, then the next scan drains it
                self._spawn(self._unload(served), f"unload-{served.name}-{served.version}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, served: ServedModel) -> None:
        log.info("loading model %s %s", served.name, served.version)
        await self._open(served)
        if served.model is not None:
            await self._warm(served)

    async def _open(self, served: ServedModel) -> None:
        """Session, metadata check and batcher; ``failed`` with the reason otherwise."""
        try:
            model = await asyncio.to_thread(load_file, self.settings, served.path)
            served.sha256 = await asyncio.to_thread(sha256_of, served.path)
        except Exception as err:  # a broken version must not stop the others
            self._failed(served, err)
            return
        # Requests see the repository's name and version; the file's own stay in metadata.
        model.info = dataclasses.replace(model.info, name=served.name, version=served.version)
        self._attach(served, model)

    async def _warm(self, served: ServedModel) -> None:
        try:
            await served.running_batcher.warm_up(warm_up_sizes(self.settings.max_batch_size))
        except Exception as err:
            await served.running_batcher.stop()
            served.model, served.batcher = None, None
            self._failed(served, err)
            return
        served.state = ModelState.READY
        self._metrics.model_ready.labels(
            model=served.name, version=served.version, provider=served.loaded.provider
        ).set(1)
        log.info("model %s %s ready on %s", served.name, served.version, served.loaded.provider)

    async def _unload(self, served: ServedModel) -> None:
        """Stop routing to it, let its requests finish on it, then free it."""
        was_ready = served.ready
        served.state = ModelState.DRAINING
        if was_ready:
            self._metrics.model_ready.labels(
                model=served.name, version=served.version, provider=served.loaded.provider
            ).set(0)
        log.info("model %s %s removed: draining", served.name, served.version)
        await served.wait_idle()
        if served.batcher is not None:
            await served.batcher.stop()
        served.model, served.batcher = None, None
        self._versions.pop((served.name, served.version), None)
        log.info("model %s %s unloaded", served.name, served.version)

    def _attach(self, served: ServedModel, model: Model) -> None:
        s = self.settings
        served.model = model
        served.batcher = Batcher(
            model.run,
            clip_shape=model.info.clip_shape,
            max_batch_size=s.max_batch_size,
            max_delay_s=s.max_delay_ms / 1000,
            max_queue=s.max_queue,
            metrics=self._metrics,
            admitted=_awaited_of(served),
        )
        served.batcher.start()

    def _failed(self, served: ServedModel, err: BaseException) -> None:
        served.fail(str(err) or type(err).__name__)
        log.warning("model %s %s failed to load: %s", served.name, served.version, served.reason)



def load_file(settings: Settings, path: Path) -> Model:
    """``path``'s model with the settings' providers and threads (blocking)."""
    return load_model(
        path,
        providers=settings.provider_chain,
        intra_op_threads=settings.intra_op_threads,
        cuda_tf32=settings.cuda_tf32,
    )


def warm_up_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to ``max_batch_size``, and the maximum itself."""
    sizes = {1 << k for k in range(max_batch_size.bit_length()) if 1 << k <= max_batch_size}
    return sorted(sizes | {max_batch_size})


def _awaited_of(served: ServedModel) -> Callable[[], int]:
    return lambda: served.awaited


def _changed(served: ServedModel, file: VersionFile) -> bool:
    return served.signature != file.signature


def _not_ready(served: ServedModel) -> str:
    text = f"model {served.name} version {served.version} is {served.state.value}"
    return f"{text}: {served.reason}" if served.reason else text
