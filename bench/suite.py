"""Suite: every measurement of one ``make bench`` run, interleaved so they share conditions.

Every server is loaded by the same raw-socket client (``client.run_raw``); the
service at W1 concurrency 8 also by httpx, for reference. W1 at concurrency 8
goes round by round (floor, service, idiomatic, naive, then the next repeat)
so that others' load on the machine, a shared 2-core box, falls on all of
them alike; ratios are taken within a round and their median
reported. Then the service alone at its other concurrencies, HD (W2) for the
service and the idiomatic server (the naive one would hold 5 GB of RGB per
HD minute), and length scaling: the W3 videos interleaved with the 10-s W1
clips, one request at a time. The servers run for the whole suite, and the
service's process tree is watched throughout for its peak memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from bench import client, floor, servers
from bench.client import RunResult, Upload
from bench.procs import TreeMonitor, Usage
from bench.workloads import Workload
from service.core.settings import Settings
from service.media.decode_job import DecodeJob
from service.pipeline.inference import Model, load_model

log = logging.getLogger(__name__)

CONTENDERS = ("service", "idiomatic", "naive")
MAIN_CONCURRENCY = 8
# W3 and 10-s clip requests take ~0.2 s a pair: a few pairs per repeat steady their medians.
W3_ROUNDS_PER_REPEAT = 4


@dataclass
class Config:
    model: Path
    workloads: dict[str, Workload]
    repeats: int
    concurrency: tuple[int, ...] = (1, 8, 32)
    contenders: tuple[str, ...] = CONTENDERS
    log_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # VIDLSTM_* for the service

    @property
    def settings(self) -> Settings:
        """The service's settings, as ``python -m service`` will read them."""
        # Keyword values beat the environment, as VIDLSTM_* given to the service beat its own.
        values: dict[str, Any] = {
            k.removeprefix("VIDLSTM_").lower(): v for k, v in self.env.items()
        }
        return Settings(**values)


@dataclass
class Measured:
    """Everything the suite measured, before it is summarised."""

    floor: dict[str, list[floor.Floor]] = field(default_factory=dict)
    runs: dict[str, list[RunResult]] = field(default_factory=dict)  # "<server>/<wl>/c<n>"
    ratios: dict[str, list[float]] = field(default_factory=dict)  # one per W1 round
    usage_c8: list[Usage] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    hwm_mb: float = 0.0

    def add(self, key: str, run: RunResult) -> RunResult:
        self.runs.setdefault(key, []).append(run)
        if run.errors:
            log.warning("%s: %d errors, e.g. %s", key, run.errors, run.error_samples[:2])
        return run


def service_job(settings: Settings, model: Model) -> DecodeJob:
    """The job the service's runtime builds for a whole-video request."""
    info = model.info
    job = DecodeJob(
        num_frames=info.num_frames, height=info.height, width=info.width, limits=settings.limits
    )
    mode = getattr(settings, "decode_mode", None)  # absent in services older than issue 5
    return job if mode is None else replace(job, mode=mode)


class Suite:
    """One benchmark run: servers up, floor pool up, measurements in order."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.settings = cfg.settings
        self.model = load_model(
            cfg.model,
            providers=self.settings.provider_chain,
            intra_op_threads=self.settings.intra_op_threads,
            cuda_tf32=self.settings.cuda_tf32,
        )
        self.job = service_job(self.settings, self.model)
        self.batch = self.settings.max_batch_size
        self.cores = len(os.sched_getaffinity(0))
        self.m = Measured()
        self.running: dict[str, servers.Server] = {}

    def run(self) -> Measured:
        w1 = self.cfg.workloads["w1"]
        uploads = [Upload.of(p) for p in w1.paths]
        decode_pool = floor.DecodeFloor(self.cores)
        clips = floor.sample_clips(w1.paths, self.job, self.batch)
        try:
            with contextlib.ExitStack() as stack:
                for name in self.cfg.contenders:
                    self.running[name] = stack.enter_context(
                        servers.running(
                            name, self.cfg.model, env=self.cfg.env, log_dir=self.cfg.log_dir
                        )
                    )
                with TreeMonitor(self.running["service"].pid) as monitor:
                    for server in self.running.values():
                        self._warm_up(server, uploads)
                    self._w1_rounds(uploads, decode_pool, clips, monitor)
                    self._w1_service(uploads)
                    if "w2" in self.cfg.workloads:
                        self._w2(decode_pool)
                    if "w3" in self.cfg.workloads:
                        self._w3(w1)
                    self.m.peak_rss_mb, self.m.hwm_mb = monitor.peak_rss_mb, monitor.hwm_sum_mb
        finally:
            decode_pool.close()
        return self.m

    def _url(self, name: str) -> str:
        return self.running[name].base_url

    def _warm_up(self, server: servers.Server, uploads: list[Upload]) -> None:
        """A few requests two at a time: every worker has run once before timing starts."""
        run = client.run(server.base_url, uploads[:MAIN_CONCURRENCY], concurrency=2)
        if run.errors:
            raise RuntimeError(f"{server.name} fails at warm-up: {run.error_samples[:3]}")

    def _w1_rounds(
        self,
        uploads: list[Upload],
        decode_pool: floor.DecodeFloor,
        clips: npt.NDArray[np.uint8],
        monitor: TreeMonitor,
    ) -> None:
        paths, m, c = self.cfg.workloads["w1"].paths, self.m, MAIN_CONCURRENCY
        for _ in tqdm(range(self.cfg.repeats), desc="W1 rounds: floor, servers at c8"):
            decode_rate, frames = decode_pool.run(paths, self.job)
            infer_rate = floor.best_infer_rate(
                self.model,
                self.cfg.model,
                clips,
                batch=self.batch,
                cores=self.cores,
                cuda_tf32=self.settings.cuda_tf32,
            )
            fl = floor.Floor(decode_rate, infer_rate, frames)
            m.floor.setdefault("w1", []).append(fl)
            window = monitor.window()
            url = self._url("service")
            mine = m.add("service/w1/c8", client.run_raw(url, uploads, concurrency=c))
            m.usage_c8.append(window.usage())
            m.ratios.setdefault("service_vs_floor", []).append(mine.videos_per_s / fl.videos_per_s)
            # The same run with httpx, whose event loop takes a fifth of a core from the server.
            ref = m.add("service/w1_httpx/c8", client.run(url, uploads, concurrency=c))
            m.ratios.setdefault("service_vs_floor_httpx", []).append(
                ref.videos_per_s / fl.videos_per_s
            )
            for name in ("idiomatic", "naive"):
                if name in self.running:
                    other = m.add(
                        f"{name}/w1/c8", client.run_raw(self._url(name), uploads, concurrency=c)
                    )
                    if other.videos_per_s > 0:
                        m.ratios.setdefault(f"service_vs_{name}", []).append(
                            mine.videos_per_s / other.videos_per_s
                        )

    def _w1_service(self, uploads: list[Upload]) -> None:
        for conc in self.cfg.concurrency:
            if conc == MAIN_CONCURRENCY:
                continue
            for _ in tqdm(range(self.cfg.repeats), desc=f"W1 service c{conc}", leave=False):
                run = client.run_raw(self._url("service"), uploads, concurrency=conc)
                self.m.add(f"service/w1/c{conc}", run)

    def _w2(self, decode_pool: floor.DecodeFloor) -> None:
        w2 = self.cfg.workloads["w2"]
        uploads = [Upload.of(p) for p in w2.paths]
        # HD costs minutes per pass on two cores: half the repeats (at least one).
        for _ in tqdm(range(max(1, self.cfg.repeats // 2)), desc="W2 (HD)", leave=False):
            decode_rate, frames = decode_pool.run(w2.paths, self.job)
            infer_rate = float(np.median([f.infer_clips_per_s for f in self.m.floor["w1"]]))
            self.m.floor.setdefault("w2", []).append(floor.Floor(decode_rate, infer_rate, frames))
            for name, conc in (("service", 1), ("service", 2), ("idiomatic", 2)):
                if name in self.running:
                    run = client.run_raw(self._url(name), uploads, concurrency=conc)
                    self.m.add(f"{name}/w2/c{conc}", run)

    def _w3(self, w1: Workload) -> None:
        long = [Upload.of(p) for p in self.cfg.workloads["w3"].paths]
        short = [Upload.of(p) for p, c in zip(w1.paths, w1.clips, strict=True) if c.seconds == 10]
        url = self._url("service")
        rounds = max(self.cfg.repeats, 3)
        for i in tqdm(range(W3_ROUNDS_PER_REPEAT * rounds), desc="W3 vs 10-s W1", leave=False):
            # The ratio with a client that sends at C speed, long and short in turn, so
            # that the host's drift touches both; httpx's own figures beside it.
            self.m.add("service/w3/c1", client.run_raw(url, long))
            self.m.add("service/w1_10s/c1", client.run_raw(url, short))
            if i % W3_ROUNDS_PER_REPEAT == 0:
                self.m.add("service/w3_httpx/c1", client.run(url, long, concurrency=1))
                self.m.add("service/w1_10s_httpx/c1", client.run(url, short, concurrency=1))
