"""Client: closed-loop load generators over HTTP (raw sockets, or httpx for reference).

``concurrency`` threads (:func:`run_raw`) or asyncio tasks (:func:`run`) each
send one upload, wait for the answer and send the next, until every file of
the run has been sent once. Bodies are built once, before timing (multipart
``file`` field, as ``curl -F file=@clip.mp4`` sends), so the client spends its
CPU on HTTP alone: it shares the cores with the server under test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
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


def run_raw(base_url: str, uploads: Sequence[Upload], *, concurrency: int = 1) -> RunResult:
    """Send every upload once with ``concurrency`` requests in flight, over plain sockets.

    Each of ``concurrency`` threads keeps one HTTP/1.1 connection alive and
    hands the kernel each body with ``sendall``, like curl or wrk: a client
    that costs the shared cores little. httpx's upload path moves about 450
    MB/s on loopback and its event loop takes a fifth of a core at 40
    requests/s; ``run`` measures with it for reference.
    """
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    result = RunResult(concurrency)
    todo = iter(uploads)
    lock = threading.Lock()

    def worker() -> None:
        conn = _RawConnection(host, int(port))
        try:
            while True:
                with lock:
                    upload = next(todo, None)
                if upload is None:
                    return
                start = time.perf_counter()
                try:
                    status, body = conn.post(upload)
                except OSError as err:
                    conn.close()
                    with lock:
                        result.errors += 1
                        result.error_samples.append(f"{upload.name}: {err!r}"[:200])
                    continue
                latency = time.perf_counter() - start
                with lock:
                    _record(result, upload.name, status, body, latency)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    start_all = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.elapsed_s = time.perf_counter() - start_all
    return result


def _record(result: RunResult, name: str, status: int, body: bytes, latency: float) -> None:
    if status != 200:
        result.errors += 1
        result.error_samples.append(f"{name}: {status} {body[:120]!r}")
        return
    result.latencies_s.append(latency)
    timing = json.loads(body).get("timing_ms")
    if isinstance(timing, dict):
        result.server_timings.append(timing)


class _RawConnection:
    """One keep-alive HTTP/1.1 connection: POST /classify, read the answer by its length."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._buffer = b""

    def post(self, upload: Upload) -> tuple[int, bytes]:
        head = (
            f"POST /classify HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: {upload.content_type}\r\nContent-Length: {len(upload.body)}\r\n\r\n"
        ).encode()
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), REQUEST_TIMEOUT_S)
            # As curl and httpx do: without it a small body waits ~40 ms behind the
            # head for the server's delayed ACK (Nagle), and tiny uploads measure that.
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        self._sock.sendall(head)
        self._sock.sendall(upload.body)
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        header, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])  # HTTP/1.1 200 OK
        fields = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])
        }
        length = int(fields.get(b"content-length", b"0"))
        while len(self._buffer) < length:
            self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        if fields.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-answer")
        self._buffer += chunk

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
