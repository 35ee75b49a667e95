"""Soak: mixed good and hostile traffic against a real replica for a long time.

    .venv/bin/python -m bench.soak [--minutes 30] [--clients 4] [--warm-up-minutes 3]
        [--model M.onnx] [--out soak.json]

Half the requests are valid videos in every codec and container of the
hostile suite (:mod:`tests.support.hostile`), half are its hostile files and requests
(corrupt, truncated, lying headers, oversized heads, stalled bodies, clients
that hang up). Every answer must be the one expected. Every 10 s the
server's process tree is sampled from ``/proc``: resident memory, open file
descriptors, spooled files, requests in flight.

Passes when, after the warm-up, the tree's resident memory grew by less than
10 %, open descriptors and spooled files stayed flat, no answer was a 5xx and
none differed from its expected outcome.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.overload import default_model
from tests.support import hostile
from tests.support.hostile import Expected, Reply, Target
from tests.support.media import moving_square_frames, write_video
from tests.support.observe import descendants, open_fds, rss_mb, run_service, spooled

SAMPLE_EVERY_S = 10.0
MAX_RSS_GROWTH = 0.10
MiB = 1024 * 1024
# Expensive-in-time cases (a stalled body takes the idle timeout) are drawn rarely.
SLOW_CASES = {"slowloris-byte-per-0.3s", "body-stalls"}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    send: Callable[[Target], Reply]
    expected: Expected
    good: bool


@dataclass
class Sample:
    t_s: float
    tree_rss_mb: float
    server_rss_mb: float
    server_fds: int
    worker_fds: int
    processes: int
    spooled: int
    in_flight: int


@dataclass
class Summary:
    minutes: float
    clients: int
    requests: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    five_xx: int = 0
    mismatches: int = 0
    mismatch_samples: list[str] = field(default_factory=list)
    rss_after_warm_up_mb: float = 0.0
    rss_end_mb: float = 0.0
    rss_growth: float = 0.0
    fds_after_warm_up: int = 0
    fds_max_after_warm_up: int = 0
    fds_end: int = 0
    spooled_end: int = 0
    samples: list[Sample] = field(default_factory=list)
    verdict: dict[str, bool] = field(default_factory=dict)


def _upload(name: str, data: bytes) -> Callable[[Target], Reply]:
    def send(target: Target) -> Reply:
        with httpx.Client(base_url=target.base_url, timeout=120) as client:
            response = client.post("/classify", files={"file": (name, data, "video/mp4")})
        return Reply(
            response.status_code, response.headers.get("content-type", ""), response.content
        )

    return send


def build_cases(scratch: Path, max_upload_bytes: int) -> list[Case]:
    cases = []
    for case in hostile.FILE_CASES:
        data = case.make(scratch)
        good = case.expected == hostile.OK
        cases.append(Case(case.name, _upload(case.filename, data), case.expected, good))
    for proto in hostile.protocol_cases(max_upload_bytes):
        good = proto.expected == hostile.OK
        cases.append(Case(proto.name, proto.send, proto.expected, good))
    return cases


def sample(pid: int, temp_dir: Path, base_url: str, t_s: float) -> Sample:
    workers = descendants(pid)
    try:
        in_flight = int(httpx.get(f"{base_url}/health", timeout=10).json()["in_flight"])
    except (httpx.HTTPError, ValueError, KeyError):
        in_flight = -1
    return Sample(
        t_s=round(t_s, 1),
        tree_rss_mb=round(rss_mb(pid) + sum(rss_mb(w) for w in workers), 1),
        server_rss_mb=round(rss_mb(pid), 1),
        server_fds=open_fds(pid),
        worker_fds=sum(open_fds(w) for w in workers),
        processes=1 + len(workers),
        spooled=len(spooled(temp_dir)),
        in_flight=in_flight,
    )


class Traffic:
    """``clients`` threads sending cases until stopped; counts and checks every answer."""

    def __init__(self, target: Target, cases: list[Case], clients: int, seed: int) -> None:
        self.target = target
        self.good = [c for c in cases if c.good]
        self.bad = [c for c in cases if not c.good and c.name not in SLOW_CASES]
        self.slow = [c for c in cases if c.name in SLOW_CASES]
        self.outcomes: Counter[str] = Counter()
        self.five_xx = 0
        self.mismatches: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(random.Random(seed + i),), daemon=True)
            for i in range(clients)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _pick(self, rng: random.Random) -> Case:
        roll = rng.random()
        if roll < 0.5:
            return rng.choice(self.good)
        if roll < 0.51 and self.slow:
            return rng.choice(self.slow)
        return rng.choice(self.bad)

    def _run(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            case = self._pick(rng)
            try:
                reply = case.send(self.target)
            except (httpx.HTTPError, OSError) as err:
                reply = Reply(0, "", repr(err).encode())
            problem = hostile.mismatch(reply, case.expected)
            with self._lock:
                self.outcomes[case.expected.label] += 1
                self.five_xx += reply.status >= 500
                if problem is not None:
                    self.mismatches.append(f"{case.name}: {problem}")


def run(args: argparse.Namespace) -> Summary:
    work = Path(tempfile.mkdtemp(prefix="vidlstm-soak-"))
    model = args.model or default_model(work)
    scratch = work / "scratch"
    scratch.mkdir()
    cap = 4 * MiB
    cases = build_cases(scratch, cap)
    video = write_video(work / "good.mp4", moving_square_frames(50, 96, 128)).read_bytes()
    env = {
        "VIDLSTM_MAX_UPLOAD_BYTES": str(cap),
        "VIDLSTM_UPLOAD_IDLE_TIMEOUT_S": "1",
        "VIDLSTM_UPLOAD_TIMEOUT_S": "3",
        "VIDLSTM_LOG_LEVEL": "warning",
    }
    summary = Summary(args.minutes, args.clients)
    with run_service(Path(model), work, env) as service:
        target = Target("127.0.0.1", service.port, video)
        traffic = Traffic(target, cases, args.clients, args.seed)
        start = time.monotonic()
        end = start + args.minutes * 60
        traffic.start()
        next_print = start
        try:
            while (now := time.monotonic()) < end:
                s = sample(service.pid, service.temp_dir, service.base_url, now - start)
                summary.samples.append(s)
                if now >= next_print:
                    print(
                        f"[{s.t_s / 60:5.1f} min] {sum(traffic.outcomes.values())} requests, "
                        f"rss {s.tree_rss_mb} MB (server {s.server_rss_mb}), fds "
                        f"{s.server_fds}+{s.worker_fds}, {s.processes} processes, "
                        f"spooled {s.spooled}, 5xx {traffic.five_xx}, "
                        f"mismatches {len(traffic.mismatches)}",
                        flush=True,
                    )
                    next_print = now + 60
                time.sleep(min(SAMPLE_EVERY_S, max(end - time.monotonic(), 0)))
        finally:
            traffic.stop()
        time.sleep(1)  # let the last connections close
        summary.samples.append(
            sample(service.pid, service.temp_dir, service.base_url, time.monotonic() - start)
        )
    summarise(summary, traffic, args.warm_up_minutes * 60)
    return summary


def summarise(summary: Summary, traffic: Traffic, warm_up_s: float) -> None:
    summary.requests = sum(traffic.outcomes.values())
    summary.by_outcome = dict(sorted(traffic.outcomes.items()))
    summary.five_xx = traffic.five_xx
    summary.mismatches = len(traffic.mismatches)
    summary.mismatch_samples = traffic.mismatches[:20]
    after = [s for s in summary.samples if s.t_s >= warm_up_s] or summary.samples
    # Medians of the first and last minute after the warm-up: one sample is noise.
    per_min = max(int(60 / SAMPLE_EVERY_S), 1)
    first = float(np.median([s.tree_rss_mb for s in after[:per_min]]))
    last = float(np.median([s.tree_rss_mb for s in after[-per_min - 1 : -1] or after[-1:]]))
    summary.rss_after_warm_up_mb, summary.rss_end_mb = round(first, 1), round(last, 1)
    summary.rss_growth = round(last / first - 1, 4) if first else 0.0
    fds = [s.server_fds + s.worker_fds for s in after]
    summary.fds_after_warm_up, summary.fds_max_after_warm_up = fds[0], max(fds)
    summary.fds_end = fds[-1]
    summary.spooled_end = summary.samples[-1].spooled
    # Workers are recycled now and then: one may be briefly missing, never one too many.
    most_processes = max(s.processes for s in after)
    summary.verdict = {
        f"rss growth after warm-up < {MAX_RSS_GROWTH:.0%}": summary.rss_growth < MAX_RSS_GROWTH,
        # In-flight connections come and go; the count at the end must be what it was.
        "open fds flat": summary.fds_end <= summary.fds_after_warm_up,
        "no file left in the spool": summary.spooled_end == 0,
        "process count flat": most_processes <= after[0].processes,
        "zero 5xx": summary.five_xx == 0,
        "every answer as expected": summary.mismatches == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warm-up-minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the summary as JSON")
    args = parser.parse_args()
    summary = run(args)
    data = asdict(summary)
    samples = data.pop("samples")
    print(json.dumps(data, indent=2))
    if args.out:
        args.out.write_text(json.dumps({**data, "samples": samples}, indent=2) + "\n")
    sys.exit(0 if all(summary.verdict.values()) else 1)


if __name__ == "__main__":
    main()
