"""Scale-up figures, measured within the same ``make bench`` run as the rest.

- **Front CPU per request**: the CPU time of the service's serving process(es)
  and supervisor (not the decode workers), less the ONNX Runtime CPU time the
  service itself reports (``vidlstm_inference_cpu_seconds_total``; its wall time
  would overstate it on a busy machine), per answered request: what receiving,
  spooling, admitting, handing off and answering cost.
- **Serving processes**: the service with ``VIDLSTM_SERVER_PROCESSES=N`` against
  the one-process service on W1 at concurrency 8, round by round.
- **Ingress ceiling**: requests/s at concurrency 16 on the tiny clips with a model
  whose inference is free (:mod:`bench.ingress_model`), so neither decoding nor
  inference sets it; one serving process against N.
- **The lone request**: W1 at concurrency 1, the service against the LitServe-style
  server (:mod:`bench.litserve_style_server`), round by round (in ``suite``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from bench import client, ingress_model, procs, servers
from bench.client import RunResult, Upload
from bench.workloads import Workload

log = logging.getLogger(__name__)

INGRESS_CONCURRENCY = 16
INGRESS_PASSES = 10  # each run sends the 40 tiny clips this many times
# The processes compared with one: the default on a node of 8+ cores, and what
# a 2-core machine can show of it.
PROCESSES = 2
_INFERENCE_CPU = re.compile(r"^vidlstm_inference_cpu_seconds_total (\S+)$", re.M)


def inference_seconds(base_url: str) -> float:
    """ONNX Runtime CPU time the service has spent so far, over all its processes."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = _INFERENCE_CPU.search(text)
    return float(found.group(1)) if found else 0.0


@dataclass(frozen=True, slots=True)
class _Reading:
    cpu_s: float
    inference_s: float


def _read(server: servers.Server) -> _Reading:
    pids = procs.front_pids(server.pid)
    return _Reading(procs.cpu_seconds(pids, reaped=False), inference_seconds(server.base_url))


def run_metered(
    server: servers.Server, uploads: list[Upload], concurrency: int
) -> tuple[RunResult, float]:
    """One run of the raw-socket client, and the front's CPU ms per answered request."""
    before = _read(server)
    run = client.run_raw(server.base_url, uploads, concurrency=concurrency)
    after = _read(server)
    answered = max(run.requests, 1)
    front_s = (after.cpu_s - before.cpu_s) - (after.inference_s - before.inference_s)
    return run, 1000 * front_s / answered


@contextlib.contextmanager
def service(
    model: Path, env: dict[str, str], *, processes: int, label: str, log_dir: Path | None
) -> Iterator[servers.Server]:
    """The service with ``processes`` serving processes, warmed up."""
    settings = {**env, "VIDLSTM_SERVER_PROCESSES": str(processes)}
    with servers.running("service", model, env=settings, log_dir=log_dir, label=label) as server:
        yield server


def ingress_uploads(tiny: Workload) -> list[Upload]:
    return [Upload.of(p) for p in tiny.paths] * INGRESS_PASSES


def ingress_model_path(cache: Path) -> Path:
    return ingress_model.write(cache / "ingress-stand-in.onnx")


def ingress_rounds(
    contenders: dict[str, servers.Server], uploads: list[Upload], repeats: int
) -> dict[str, list[tuple[RunResult, float]]]:
    """Every contender at concurrency 16 on the tiny clips, round by round."""
    for server in contenders.values():  # every worker and process has run once
        client.run_raw(server.base_url, uploads[: INGRESS_CONCURRENCY * 4], concurrency=4)
    out: dict[str, list[tuple[RunResult, float]]] = {name: [] for name in contenders}
    for _ in tqdm(range(repeats), desc="ingress ceiling (tiny clips, c16)", leave=False):
        for name, server in contenders.items():
            out[name].append(run_metered(server, uploads, INGRESS_CONCURRENCY))
    return out
