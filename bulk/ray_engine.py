"""The Ray engine: the same classifier in Ray Data actors, on this machine or a cluster.

``ray.data.from_items`` of the paths (paths, not bytes: decoded video would
flood the object store) -> ``map_batches`` with :class:`RayClassify`, a callable
class: each actor owns one :class:`~bulk.classifier.Classifier` (an ONNX Runtime
session and its own decode worker processes) on an event loop of its own ->
``write_parquet`` into the output folder. A decoder that crashes takes down its
worker process, not the actor: the file is recorded as ``decoder-crashed`` and
the worker replaced, as in the service. Every other per-file failure is a row too.

Actors: one per ``WORKERS_PER_ACTOR`` decode workers, each reserving one CPU,
and on a machine of few CPUs one CPU is left to the read tasks (an actor pool
that takes every CPU can hang a Dataset).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from bulk.classifier import Classifier, JobOptions
from bulk.table import Row, to_arrow
from service.core.settings import Settings

log = logging.getLogger(__name__)

# Files per actor call: enough to fill its decode workers twice over.
BATCH_PER_WORKER = 2
CALLS_PER_ACTOR = 2


class RayClassify:
    """Ray Data's callable class: a batch of paths in, their rows out (an Arrow table)."""

    def __init__(self, settings: Settings, top_k: int, segments: bool) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="bulk-loop", daemon=True).start()
        self._classifier = Classifier(settings, top_k=top_k, segments=segments)
        self._call(self._classifier.__aenter__())

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> pa.Table:
        paths = [Path(str(p)) for p in np.asarray(batch["path"]).tolist()]
        return to_arrow(self._call(self._classify_all(paths)))

    async def _classify_all(self, paths: list[Path]) -> list[Row]:
        return await asyncio.gather(*(self._classifier.classify(p) for p in paths))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


def plan(cpus: int, workers: int) -> tuple[int, int]:
    """``(actors, decode workers per actor)`` for ``workers`` decoders on ``cpus`` CPUs."""
    spare = max(1, cpus - 1) if cpus <= 4 else cpus  # leave one to the read tasks
    actors = max(1, min(spare, workers // 2 or 1))
    return actors, max(1, -(-workers // actors))


def run(
    paths: Sequence[Path],
    settings: Settings,
    out: Path,
    options: JobOptions,
    *,
    address: str | None,
) -> None:
    """Classify ``paths`` on Ray into Parquet files under ``out``, with the decode
    workers ``settings`` asks for in all."""
    import ray  # noqa: PLC0415 - optional: the [bulk] extra

    workers = settings.decode_workers
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", workers))  # type: ignore[no-untyped-call]
    actors, per_actor = plan(cpus, workers)
    log.info("ray: %d actors x %d decode workers on %d CPUs", actors, per_actor, cpus)
    actor_settings = settings.model_copy(update={"decode_workers": per_actor})
    dataset = ray.data.from_items([{"path": str(p)} for p in paths])
    rows = dataset.map_batches(
        RayClassify,
        fn_constructor_kwargs={
            "settings": actor_settings,
            "top_k": options.top_k,
            "segments": options.segments,
        },
        batch_size=BATCH_PER_WORKER * per_actor,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=1,
        # Two batches at once per actor: one decodes while the other's rows go out,
        # so the workers never wait for Ray between batches.
        max_concurrency=CALLS_PER_ACTOR,
    )
    out.mkdir(parents=True, exist_ok=True)
    rows.write_parquet(str(out), min_rows_per_file=options.part_rows)
