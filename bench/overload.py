"""Overload: measure a replica's capacity, then offer it several times that.

    .venv/bin/python -m bench.overload [--model M.onnx] [--workers 2] [--factor 4]
        [--seconds 20] [--queue-per-worker 0] [--max-decode-wait-s 5] [--out overload.json]

Runs a real ``python -m service`` and, against it:

1. unloaded: one request at a time -> p50/p99 latency;
2. capacity: closed loop with every decode worker busy and the decode queue full
   (what admission lets in; one waiting per worker when unbounded) -> answers/s;
3. overload: open loop at ``factor`` x capacity for ``seconds``.

Passes when every request gets an answer, nothing is a 5xx, the excess gets
503 with ``Retry-After`` quickly (p99 of rejections < 50 ms) and the accepted
requests stay fast (p99 <= 2x the unloaded p99). The client shares the cores
with the server: run it on an otherwise idle machine for figures to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from tests.support.media import moving_square_frames, write_video
from tests.support.observe import run_service

REJECT_P99_MS = 50.0
OVERLOAD_TAG = "overload"
ACCEPT_P99_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no answer (transport error)
    seconds: float
    retry_after: bool


@dataclass
class Report:
    workers: int
    queue_per_worker: int | None
    max_decode_wait_s: float
    video_bytes: int
    unloaded_p50_ms: float = 0.0
    unloaded_p99_ms: float = 0.0
    capacity_rps: float = 0.0
    offered_rps: float = 0.0
    offered: int = 0
    answered: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    accepted_rps: float = 0.0
    accepted_p50_ms: float = 0.0
    accepted_p99_ms: float = 0.0
    rejected_p50_ms: float = 0.0
    rejected_p99_ms: float = 0.0
    rejected_without_retry_after: int = 0
    # The server's own view (its access log): what the client adds is the rest.
    server_accepted_p99_ms: float = 0.0
    server_rejected_p50_ms: float = 0.0
    server_rejected_p99_ms: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)
    verdict: dict[str, bool] = field(default_factory=dict)


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else 0.0


async def _send(client: httpx.AsyncClient, body: bytes, tag: str = "bench") -> Answer:
    start = time.perf_counter()
    headers = {"Content-Type": "video/mp4", "X-Request-ID": f"{tag}-{uuid.uuid4().hex}"}
    try:
        response = await client.post("/classify", content=body, headers=headers)
    except httpx.HTTPError:
        return Answer(0, time.perf_counter() - start, False)
    return Answer(
        response.status_code, time.perf_counter() - start, "retry-after" in response.headers
    )


def _client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    return httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits)


async def unloaded(base_url: str, body: bytes, n: int) -> list[Answer]:
    async with _client(base_url) as client:
        return [await _send(client, body) for _ in range(n)]


async def closed_loop(base_url: str, body: bytes, concurrency: int, seconds: float) -> float:
    """Answers per second (200s only) with ``concurrency`` requests always in flight."""
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            if (await _send(client, body)).status == 200:
                done += 1

    async with _client(base_url) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return done / (time.perf_counter() - start)


async def open_loop(base_url: str, body: bytes, rate: float, seconds: float) -> list[Answer]:
    """Requests started at ``rate`` per second, whatever the answers; all awaited."""
    tasks: list[asyncio.Task[Answer]] = []
    async with _client(base_url) as client:
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(client, body, OVERLOAD_TAG)))
        return list(await asyncio.gather(*tasks))


def make_video(directory: Path) -> Path:
    """A 10 s 640x480 H.264 clip at 25 fps over a fixed texture (~0.6 MB): a decode that
    costs what a real upload's does, not a flat frame's few milliseconds."""
    frames = moving_square_frames(250, 480, 640, size=120)
    texture = np.random.default_rng(0).integers(-12, 12, size=(1, 480, 640, 3))
    textured = (frames.astype(np.int16) + texture).clip(0, 255).astype(np.uint8)
    return write_video(directory / "overload.mp4", textured)


def default_model(directory: Path) -> Path:
    for candidate in (Path("models/vidlstm.onnx"), Path("bench/cache/bench-16x64x64.onnx")):
        if candidate.is_file():
            return candidate
    from model_export.tiny import build_tiny_model  # noqa: PLC0415  (torch: only if needed)

    return build_tiny_model(directory / "tiny.onnx")


def run(args: argparse.Namespace) -> Report:
    work = Path(tempfile.mkdtemp(prefix="vidlstm-overload-"))
    model = args.model or default_model(work)
    body = make_video(work).read_bytes()
    env = {
        "VIDLSTM_DECODE_WORKERS": str(args.workers),
        "VIDLSTM_MAX_DECODE_WAIT_S": str(args.max_decode_wait_s),
        "VIDLSTM_LOG_LEVEL": "info",  # the access log gives the server-side latencies
    }
    queue = args.queue_per_worker if args.queue_per_worker >= 0 else None
    if queue is not None:
        env["VIDLSTM_DECODE_QUEUE_PER_WORKER"] = str(queue)
    report = Report(args.workers, queue, args.max_decode_wait_s, len(body))
    # What admission lets in at once: every worker busy and the queue full (one per worker
    # when unbounded). Capacity is measured with that many requests in flight, never more.
    admitted = args.workers * (1 + (1 if queue is None else queue))
    with run_service(Path(model), work, env) as service:
        url = service.base_url
        asyncio.run(unloaded(url, body, 10))  # warm-up
        quiet = [a.seconds for a in asyncio.run(unloaded(url, body, args.unloaded))]
        report.unloaded_p50_ms, report.unloaded_p99_ms = _ms(quiet, 50), _ms(quiet, 99)
        print(f"unloaded: p50 {report.unloaded_p50_ms} ms, p99 {report.unloaded_p99_ms} ms")

        report.capacity_rps = round(
            asyncio.run(closed_loop(url, body, admitted, args.capacity_seconds)), 2
        )
        print(f"capacity: {report.capacity_rps} answers/s")

        report.offered_rps = round(args.factor * report.capacity_rps, 2)
        answers = asyncio.run(open_loop(url, body, report.offered_rps, args.seconds))
        report.load_average = os.getloadavg()
        log_lines = service.log_lines()
    summarise(report, answers, args.seconds)
    server_side(report, log_lines)
    return report


def server_side(report: Report, log_lines: list[str]) -> None:
    """Latencies of the overload phase as the server measured them (access log)."""
    by_status: dict[int, list[float]] = {}
    for line in log_lines:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if str(entry.get("request_id", "")).startswith(OVERLOAD_TAG) and "status" in entry:
                by_status.setdefault(entry["status"], []).append(entry["duration_ms"] / 1000)
    report.server_accepted_p99_ms = _ms(by_status.get(200, []), 99)
    report.server_rejected_p50_ms = _ms(by_status.get(503, []), 50)
    report.server_rejected_p99_ms = _ms(by_status.get(503, []), 99)


def summarise(report: Report, answers: list[Answer], seconds: float) -> None:
    report.offered = len(answers)
    report.answered = sum(a.status != 0 for a in answers)
    codes: dict[str, int] = {}
    for a in answers:
        codes[str(a.status)] = codes.get(str(a.status), 0) + 1
    report.statuses = dict(sorted(codes.items()))
    accepted = [a.seconds for a in answers if a.status == 200]
    rejected = [a for a in answers if a.status == 503]
    report.accepted_rps = round(len(accepted) / seconds, 2)
    report.accepted_p50_ms, report.accepted_p99_ms = _ms(accepted, 50), _ms(accepted, 99)
    rejected_s = [a.seconds for a in rejected]
    report.rejected_p50_ms, report.rejected_p99_ms = _ms(rejected_s, 50), _ms(rejected_s, 99)
    report.rejected_without_retry_after = sum(not a.retry_after for a in rejected)
    report.verdict = {
        "every request answered": report.answered == report.offered,
        "no 5xx other than 503": not any(a.status >= 500 and a.status != 503 for a in answers),
        "503s carry Retry-After": report.rejected_without_retry_after == 0,
        f"rejection p99 < {REJECT_P99_MS:g} ms": report.rejected_p99_ms < REJECT_P99_MS,
        f"accepted p99 <= {ACCEPT_P99_FACTOR:g}x unloaded p99": report.accepted_p99_ms
        <= ACCEPT_P99_FACTOR * report.unloaded_p99_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the overload")
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument("--unloaded", type=int, default=60, help="requests for the unloaded p99")
    parser.add_argument(
        "--queue-per-worker", type=int, default=0, help="VIDLSTM_DECODE_QUEUE_PER_WORKER; -1: unset"
    )
    parser.add_argument("--max-decode-wait-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    sys.exit(0 if all(report.verdict.values()) else 1)


if __name__ == "__main__":
    main()
