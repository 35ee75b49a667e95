"""Suite: every measurement of one ``make bench`` run, interleaved so they share conditions.

Every server is loaded by the same raw-socket client (``client.run_raw``); the
service at W1 concurrency 8 also by httpx, for reference. W1 at concurrency 8
goes round by round (floor, service, idiomatic, naive, then the next repeat)
so that others' load on the machine, a shared 2-core box, falls on all of
them alike; ratios are taken within a round and their median
reported. Then the service alone at its other concurrencies (at 1 interleaved with the
LitServe-style server), HD (W2) for the service and the idiomatic server (the
naive one would hold 5 GB of RGB per HD minute), length scaling: the W3 videos
interleaved with the 10-s W1 clips, one request at a time; then the scale-up
figures (:mod:`bench.scale`): several serving processes against one, and the
ingress ceiling. The servers run for the whole suite, and the service's process
tree is watched throughout for its peak memory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from bench import bulk_rate, client, floor, scale, servers
from bench.client import RunResult, Upload
from bench.procs import TreeMonitor, Usage
from bench.workloads import Workload
from service.core.settings import Settings
from service.media.decode_job import DecodeJob
from service.pipeline.inference import Model, load_model

log = logging.getLogger(__name__)

CONTENDERS = ("service", "idiomatic", "naive", "litserve-style")
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
    cache: Path | None = None  # where the ingress stand-in model is written; None: no scale-up

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
    front_ms: dict[str, list[float]] = field(default_factory=dict)  # front CPU ms/request, by run
    bulk: dict[str, dict[str, float | str]] = field(default_factory=dict)  # by engine
    usage_c8: list[Usage] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    hwm_mb: float = 0.0

    def add(self, key: str, run: RunResult) -> RunResult:
        self.runs.setdefault(key, []).append(run)
        if run.errors:
            log.warning("%s: %d errors, e.g. %s", key, run.errors, run.error_samples[:2])
        return run


def _key(name: str) -> str:
    return name.replace("-", "_")


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
                if self.cfg.cache is not None:
                    self._processes(uploads)
                    if "tiny" in self.cfg.workloads:
                        self._ingress(self.cfg.cache, self.cfg.workloads["tiny"])
                    self._bulk(self.cfg.cache, w1)
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
            mine = self._metered("service/w1/c8", self.running["service"], uploads, c)
            m.usage_c8.append(window.usage())
            m.ratios.setdefault("service_vs_floor", []).append(mine.videos_per_s / fl.videos_per_s)
            # The same run with httpx, whose event loop takes a fifth of a core from the server.
            ref = m.add("service/w1_httpx/c8", client.run(url, uploads, concurrency=c))
            m.ratios.setdefault("service_vs_floor_httpx", []).append(
                ref.videos_per_s / fl.videos_per_s
            )
            for name in ("idiomatic", "naive", "litserve-style"):
                if name in self.running:
                    other = m.add(
                        f"{name}/w1/c8", client.run_raw(self._url(name), uploads, concurrency=c)
                    )
                    if other.videos_per_s > 0:
                        m.ratios.setdefault(f"service_vs_{_key(name)}", []).append(
                            mine.videos_per_s / other.videos_per_s
                        )

    def _w1_service(self, uploads: list[Upload]) -> None:
        for conc in self.cfg.concurrency:
            if conc == MAIN_CONCURRENCY:
                continue
            if conc == 1:
                self._w1_alone(uploads)
                continue
            for _ in tqdm(range(self.cfg.repeats), desc=f"W1 service c{conc}", leave=False):
                run = client.run_raw(self._url("service"), uploads, concurrency=conc)
                self.m.add(f"service/w1/c{conc}", run)

    def _w1_alone(self, uploads: list[Upload]) -> None:
        """One request at a time, round by round against the LitServe-style server and
        against the service whose batcher always waits out its delay."""
        cfg = self.cfg
        with servers.running(
            "service-waiting", cfg.model, env=cfg.env, log_dir=cfg.log_dir
        ) as waiting:
            self._warm_up(waiting, uploads)
            for _ in tqdm(range(cfg.repeats), desc="W1 service c1", leave=False):
                run = self.m.add("service/w1/c1", client.run_raw(self._url("service"), uploads))
                base = self.m.add(
                    "service-waiting/w1/c1", client.run_raw(waiting.base_url, uploads)
                )
                self._c1_ratio("batcher_no_wait_c1_p50", run, base)
                if "litserve-style" in self.running:
                    url = self._url("litserve-style")
                    other = self.m.add("litserve-style/w1/c1", client.run_raw(url, uploads))
                    self._c1_ratio("service_vs_litserve_style_c1_p50", run, other)

    def _c1_ratio(self, key: str, run: RunResult, other: RunResult) -> None:
        if other.latencies_s and run.latencies_s:
            ratio = run.percentile_ms(50) / other.percentile_ms(50)
            self.m.ratios.setdefault(key, []).append(ratio)

    def _metered(
        self, key: str, server: servers.Server, uploads: list[Upload], concurrency: int
    ) -> RunResult:
        run, front_ms = scale.run_metered(server, uploads, concurrency)
        self.m.front_ms.setdefault(key, []).append(front_ms)
        return self.m.add(key, run)

    def _processes(self, uploads: list[Upload]) -> None:
        """W1 at concurrency 8: N serving processes against one, round by round."""
        cfg, n = self.cfg, scale.PROCESSES
        label = f"service-{n}p"
        with scale.service(
            cfg.model, cfg.env, processes=n, label=label, log_dir=cfg.log_dir
        ) as many:
            self._warm_up(many, uploads)
            for _ in tqdm(range(cfg.repeats), desc=f"W1 c8: {n} processes vs 1", leave=False):
                one = self._metered("service/w1/c8", self.running["service"], uploads, 8)
                more = self._metered(f"{label}/w1/c8", many, uploads, 8)
                if one.videos_per_s > 0:
                    ratio = more.videos_per_s / one.videos_per_s
                    self.m.ratios.setdefault("processes_vs_1_w1", []).append(ratio)

    def _bulk(self, cache: Path, w1: Workload) -> None:
        """``python -m bulk`` on W1, each engine, beside this run's floor (the servers idle)."""
        engines = ["local"] + (["ray"] if importlib.util.find_spec("ray") else [])
        floor_rate = float(np.median([f.videos_per_s for f in self.m.floor["w1"]]))
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            for engine in tqdm(engines, desc="bulk on W1", leave=False):
                rate = bulk_rate.measure(engine, w1.paths, self.cfg.model, Path(tmp) / engine)
                self.m.bulk[engine] = rate.summary()
                self.m.ratios[f"bulk_{engine}_vs_floor"] = [rate.files_per_s / floor_rate]
            if "w2" in self.cfg.workloads:
                w2 = self.cfg.workloads["w2"].paths
                rss = bulk_rate.peak_rss_mb(w2, self.cfg.model, Path(tmp) / "w2")
                self.m.bulk["local_w2"] = {"engine": "local", "peak_rss_mb": round(rss, 1)}

    def _ingress(self, cache: Path, tiny: Workload) -> None:
        """The ingress ceiling (tiny clips, free inference), one process against N."""
        model, n, env, logs = (
            scale.ingress_model_path(cache),
            scale.PROCESSES,
            self.cfg.env,
            self.cfg.log_dir,
        )
        with (
            scale.service(model, env, processes=1, label="ingress-1p", log_dir=logs) as one,
            scale.service(model, env, processes=n, label=f"ingress-{n}p", log_dir=logs) as many,
        ):
            rounds = scale.ingress_rounds(
                {"ingress-1p": one, f"ingress-{n}p": many},
                scale.ingress_uploads(tiny),
                max(self.cfg.repeats, 3),
            )
        for name, runs in rounds.items():
            for run, front_ms in runs:
                self.m.add(f"{name}/tiny/c{scale.INGRESS_CONCURRENCY}", run)
                self.m.front_ms.setdefault(f"{name}/tiny/c{scale.INGRESS_CONCURRENCY}", []).append(
                    front_ms
                )
        for (single, _), (several, _) in zip(
            rounds["ingress-1p"], rounds[f"ingress-{n}p"], strict=True
        ):
            if single.videos_per_s > 0:
                self.m.ratios.setdefault("ingress_processes_vs_1", []).append(
                    several.videos_per_s / single.videos_per_s
                )

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
