"""Client: a closed-loop load generator over HTTP (httpx, asyncio).

``concurrency`` tasks each send one upload, wait for the answer and send the
next, until every file of the run has been sent once. Bodies are built once,
before timing (multipart ``file`` field, as ``curl -F file=@clip.mp4`` sends),
so the client spends its CPU on HTTP alone: it shares the cores with the
server under test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REQUEST_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Upload:
    """One prepared request body."""

    name: str
    body: bytes
    content_type: str

    @classmethod
    def of(cls, path: Path) -> Upload:
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        body = head + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        return cls(path.name, body, f"multipart/form-data; boundary={boundary}")


@dataclass(slots=True)
class RunResult:
    """One run: every upload sent once at a fixed concurrency."""

    concurrency: int
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_timings: list[dict[str, float]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_s) + self.errors

    @property
    def videos_per_s(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, pct: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(self.latencies_s, pct)) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "videos_per_s": self.videos_per_s,
            "p50_ms": self.percentile_ms(50),
            "p95_ms": self.percentile_ms(95),
            "p99_ms": self.percentile_ms(99),
            "errors": self.errors,
        }


async def _run(base_url: str, uploads: Sequence[Upload], concurrency: int) -> RunResult:
    result = RunResult(concurrency)
    todo = iter(uploads)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as client:

        async def worker() -> None:
            for upload in todo:  # a shared iterator: each upload goes out once
                start = time.perf_counter()
                try:
                    response = await client.post(
                        "/classify",
                        content=upload.body,
                        headers={"Content-Type": upload.content_type},
                    )
                except httpx.HTTPError as err:
                    result.errors += 1
                    result.error_samples.append(f"{upload.name}: {err!r}"[:200])
                    continue
                latency = time.perf_counter() - start
                if response.status_code != 200:
                    result.errors += 1
                    result.error_samples.append(
                        f"{upload.name}: {response.status_code} {response.text[:120]}"
                    )
                    continue
                result.latencies_s.append(latency)
                timing = response.json().get("timing_ms")
                if isinstance(timing, dict):
                    result.server_timings.append(timing)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed_s = time.perf_counter() - start
    return result


def run(base_url: str, uploads: Sequence[Upload], *, concurrency: int) -> RunResult:
    """Send every upload once with ``concurrency`` requests in flight."""
    return asyncio.run(_run(base_url, uploads, concurrency))


def run_raw(base_url: str, uploads: Sequence[Upload]) -> RunResult:
    """Send every upload once, one at a time, over a plain socket (``sendall``).

    For large bodies: httpx's upload path moves about 450 MB/s on loopback, so a
    70 MB body would time the client, not the server; ``sendall`` hands the
    kernel the whole body at C speed, like curl.
    """
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    result = RunResult(1)
    start_all = time.perf_counter()
    for upload in uploads:
        head = (
            f"POST /classify HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Type: {upload.content_type}\r\nContent-Length: {len(upload.body)}\r\n\r\n"
        ).encode()
        start = time.perf_counter()
        with socket.create_connection((host, int(port)), timeout=REQUEST_TIMEOUT_S) as sock:
            sock.sendall(head)
            sock.sendall(upload.body)
            reply = bytearray()
            while chunk := sock.recv(1 << 16):
                reply += chunk
        latency = time.perf_counter() - start
        status_line, _, rest = bytes(reply).partition(b"\r\n")
        body = rest.partition(b"\r\n\r\n")[2]
        if status_line.split(b" ")[1:2] != [b"200"]:  # HTTP/1.1 200 OK
            result.errors += 1
            result.error_samples.append(f"{upload.name}: {status_line[:120]!r}")
            continue
        result.latencies_s.append(latency)
        timing = json.loads(body).get("timing_ms")
        if isinstance(timing, dict):
            result.server_timings.append(timing)
    result.elapsed_s = time.perf_counter() - start_all
    return result
