"""Hostile requests: malformed, oversized, slow or abandoned HTTP, each with its answer."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from tests.support.hostile.outcomes import (
    BAD_REQUEST,
    HTTP_LAYER,
    INVALID_PARAMETER,
    NO_ANSWER,
    NO_FILE,
    OK,
    UNSUPPORTED_TYPE,
    UPLOAD_TIMEOUT,
    Expected,
    Reply,
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server listens, and a small valid video to send."""

    host: str
    port: int
    video: bytes

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProtocolCase:
    name: str
    send: Callable[[Target], Reply]
    expected: Expected


def _http(method: str, path: str = "/classify", **kwargs: object) -> Callable[[Target], Reply]:
    """A request through httpx; ``kwargs`` may be functions of the target's video."""

    def send(target: Target) -> Reply:
        args = {k: v(target.video) if callable(v) else v for k, v in kwargs.items()}
        with httpx.Client(base_url=target.base_url, timeout=30) as client:
            response = client.request(method, path, **args)  # type: ignore[arg-type]
        return Reply(
            response.status_code, response.headers.get("content-type", ""), response.content
        )

    return send


def _raw(head: str, body: bytes = b"") -> Callable[[Target], Reply]:
    """Bytes on a socket, exactly as given (``{video}`` marks where the video goes)."""

    def send(target: Target) -> Reply:
        data = head.replace("\n", "\r\n").encode("latin-1") + body
        with socket.create_connection((target.host, target.port), timeout=30) as sock:
            sock.sendall(data)
            return read_reply(sock)

    return send


def read_reply(sock: socket.socket) -> Reply:
    """Read one HTTP/1.1 response until the server closes (requests say Connection: close)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    raw = b"".join(chunks)
    if not raw.startswith(b"HTTP/"):
        return Reply(0)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return Reply(int(lines[0].split()[1]), headers.get("content-type", ""), body)


def _multipart(parts: Sequence[tuple[str, bytes]], boundary: str = "hostile") -> bytes:
    """A multipart body from (part header lines, content) pairs."""
    out = bytearray()
    for headers, content in parts:
        out += f"--{boundary}\r\n{headers}\r\n\r\n".encode("latin-1") + content + b"\r\n"
    return bytes(out + f"--{boundary}--\r\n".encode())


def _file_part(filename: str) -> str:
    return f'Content-Disposition: form-data; name="file"; filename="{filename}"'


def _multipart_post(
    parts: Callable[[bytes], Sequence[tuple[str, bytes]]],
) -> Callable[[Target], Reply]:
    return _http(
        "POST",
        content=lambda video: _multipart(parts(video)),
        headers={"Content-Type": "multipart/form-data; boundary=hostile"},
    )


def _post_with(
    head_extra: str, body: bytes, content_type: str = "video/mp4"
) -> Callable[[Target], Reply]:
    return _raw(
        "POST /classify HTTP/1.1\nHost: test\nConnection: close\n"
        f"Content-Type: {content_type}\n{head_extra}\n",
        body,
    )


def _chunked(target: Target) -> Reply:
    chunks = [target.video[i : i + 1000] for i in range(0, len(target.video), 1000)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = "Transfer-Encoding: chunked\n"
    return _post_with(head, body)(target)


def _trickle(*, pause_s: float, stop_after: int | None) -> Callable[[Target], Reply]:
    """Headers, then one byte every ``pause_s`` (stopping after ``stop_after`` bytes)."""

    def send(target: Target) -> Reply:
        head = (
            "POST /classify HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            "Content-Type: video/mp4\r\nContent-Length: 100000\r\n\r\n"
        )
        with socket.create_connection((target.host, target.port), timeout=30) as sock:
            sock.sendall(head.encode())
            sent = 0
            # Bounded: the server must answer long before 15 s.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                readable, _, _ = select.select([sock], [], [], pause_s)
                if readable:
                    break
                if stop_after is None or sent < stop_after:
                    try:
                        sock.sendall(b"\0")
                    except OSError:
                        break
                    sent += 1
            return read_reply(sock)

    return send


def _hang_up(target: Target) -> Reply:
    """Half of a declared body, then the connection closes: nobody waits for an answer."""
    head = (
        "POST /classify HTTP/1.1\r\nHost: test\r\nContent-Type: video/mp4\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection((target.host, target.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"\0" * 500_000)
    return Reply(0)


TRAVERSAL_NAME = "../../../../../tmp/vidlstm-hostile-traversal.mp4"


def protocol_cases(max_upload_bytes: int) -> list[ProtocolCase]:
    video = "video/mp4"
    many_parts = "".join(f"X-{i}: {'v' * 16}\n" for i in range(2500))
    return [
        ProtocolCase("no-file-field", _http("POST", files={"note": (None, b"hi")}), NO_FILE),
        ProtocolCase(
            "empty-raw-body", _http("POST", content=b"", headers={"Content-Type": video}), NO_FILE
        ),
        ProtocolCase(
            "empty-multipart-body",
            _http("POST", content=b"", headers={"Content-Type": "multipart/form-data; boundary=b"}),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "two-files",
            _multipart_post(lambda v: [(_file_part("a.mp4"), v), (_file_part("b.mp4"), b"junk")]),
            OK,
        ),
        ProtocolCase(
            "file-after-2000-parts",
            _multipart_post(
                lambda v: [
                    *((f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(2000)),
                    (_file_part("v.mp4"), v),
                ]
            ),
            OK,
        ),
        ProtocolCase(
            "part-header-of-100-kib",
            _multipart_post(lambda v: [(_file_part("v.mp4") + "\r\nX-Junk: " + "j" * 100_000, v)]),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "multipart-without-boundary",
            _http("POST", content=b"abc", headers={"Content-Type": "multipart/form-data"}),
            BAD_REQUEST,
        ),
        ProtocolCase(
            "filename-with-traversal",
            _multipart_post(lambda v: [(_file_part(TRAVERSAL_NAME), v)]),
            OK,
        ),
        ProtocolCase(
            "filename-absolute", _multipart_post(lambda v: [(_file_part("/etc/passwd"), v)]), OK
        ),
        ProtocolCase(
            "filename-with-nul-and-newline",
            _multipart_post(lambda v: [(_file_part("a\x00b\nc.mp4"), v)]),
            OK,
        ),
        ProtocolCase(
            "filename-of-10000-chars",  # python-multipart's line limit
            _multipart_post(lambda v: [(_file_part("x" * 10_000 + ".mp4"), v)]),
            BAD_REQUEST,
        ),
        *(
            ProtocolCase(
                f"top_k={value}",
                _http(
                    "POST",
                    f"/classify?top_k={value}",
                    content=lambda v: v,
                    headers={"Content-Type": video},
                ),
                INVALID_PARAMETER,
            )
            for value in ("abc", "-1", "0", "1.5", "9" * 30 + "x")
        ),
        ProtocolCase(
            "segments=maybe",
            _http(
                "POST",
                "/classify?segments=maybe",
                content=lambda v: v,
                headers={"Content-Type": video},
            ),
            INVALID_PARAMETER,
        ),
        ProtocolCase(
            "window_s=nan",
            _http(
                "POST",
                "/classify?segments=true&window_s=nan",
                content=lambda v: v,
                headers={"Content-Type": video},
            ),
            INVALID_PARAMETER,
        ),
        ProtocolCase("GET-classify", _http("GET"), Expected(405, "method-not-allowed")),
        ProtocolCase(
            "PUT-classify", _http("PUT", content=b"x"), Expected(405, "method-not-allowed")
        ),
        ProtocolCase(
            "DELETE-health", _http("DELETE", "/health"), Expected(405, "method-not-allowed")
        ),
        ProtocolCase("unknown-path", _http("GET", "/../../etc/passwd"), Expected(404, "not-found")),
        ProtocolCase(
            "content-type-text",
            _http("POST", content=b"hello", headers={"Content-Type": "text/plain"}),
            UNSUPPORTED_TYPE,
        ),
        ProtocolCase(
            "content-type-json",
            _http("POST", json={"file": "AAAA"}),
            UNSUPPORTED_TYPE,
        ),
        ProtocolCase("no-content-type", _http("POST", content=lambda v: v), UNSUPPORTED_TYPE),
        ProtocolCase(
            "content-length-not-a-number",
            _post_with("Content-Length: ten\n", b""),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase(
            "content-length-negative",
            _post_with("Content-Length: -5\n", b""),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase(
            "content-length-over-cap",
            _post_with(f"Content-Length: {max_upload_bytes + 1}\n", b""),
            Expected(413, "payload-too-large"),
        ),
        ProtocolCase(
            "content-length-and-chunked",
            _post_with("Content-Length: 5\nTransfer-Encoding: chunked\n", b"0\r\n\r\n"),
            Expected(400, HTTP_LAYER),
        ),
        ProtocolCase("chunked-upload", _chunked, OK),
        ProtocolCase("garbage-request-line", _raw("HELLO THERE\n\n"), Expected(400, HTTP_LAYER)),
        ProtocolCase(
            "header-of-100-kib",
            _http("GET", "/health", headers={"X-Junk": "j" * 100_000}),
            Expected(431, "headers-too-large"),
        ),
        ProtocolCase(
            "2500-headers",
            _raw(f"GET /health HTTP/1.1\nHost: test\nConnection: close\n{many_parts}\n"),
            Expected(431, "headers-too-large"),
        ),
        ProtocolCase(
            "query-of-20-kib",
            _http("GET", "/health?q=" + "q" * 20_000),
            Expected(414, "uri-too-long"),
        ),
        ProtocolCase(
            "slowloris-byte-per-0.3s", _trickle(pause_s=0.3, stop_after=None), UPLOAD_TIMEOUT
        ),
        ProtocolCase("body-stalls", _trickle(pause_s=0.1, stop_after=3), UPLOAD_TIMEOUT),
        ProtocolCase("hang-up-mid-upload", _hang_up, NO_ANSWER),
    ]
