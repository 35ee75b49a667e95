"""The upload spool: bytes in, the same bytes in the file, whatever the batching or the
pieces the client sends them in."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from service.app import create_app
from service.core.errors import PayloadTooLargeError
from service.pipeline import body as body_framing
from service.pipeline import spool, upload
from tests.conftest import make_test_settings
from tests.support import faults
from tests.support.serving import serve_in_thread


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _multipart(payload: bytes, boundary: str = "b0undary") -> tuple[bytes, str]:
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, boundary


@pytest.mark.parametrize("chunk", [1000, 64 * 1024, 300 * 1024])
@pytest.mark.parametrize("kind", ["raw", "multipart"])
async def test_spooled_file_holds_exactly_the_uploaded_bytes(
    tmp_path: Path, chunk: int, kind: str
) -> None:
    # Over five write batches: several writes run while the next batch is received.
    payload = np.random.default_rng(0).bytes(5 * upload.WRITE_BYTES + 12345)
    sink: body_framing.Sink
    if kind == "raw":
        body, sink = payload, body_framing.Sink()
    else:
        body, boundary = _multipart(payload)
        sink = body_framing.MultipartSink(boundary.encode())
    target = tmp_path / "spooled"

    with target.open("wb") as file:
        received = await upload._spool(
            _chunks(body, chunk), sink, file.fileno(), max_bytes=len(body)
        )

    assert received == len(body)
    assert target.read_bytes() == payload


async def test_a_body_over_the_cap_stops_after_the_writes_in_flight(tmp_path: Path) -> None:
    payload = bytes(4 * upload.WRITE_BYTES)
    target = tmp_path / "spooled"

    # The file is closed right after _spool fails: no write may still be running on it.
    with target.open("wb") as file, pytest.raises(PayloadTooLargeError):
        await upload._spool(
            _chunks(payload, 64 * 1024),
            body_framing.Sink(),
            file.fileno(),
            max_bytes=3 * upload.WRITE_BYTES,
        )

    assert target.stat().st_size <= 3 * upload.WRITE_BYTES


def test_write_all_resumes_partial_writes_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OS may write less than asked, or take fewer buffers than given.
    parts = [np.random.default_rng(i).bytes(n) for i, n in enumerate([0, 5000, 1, 70_000, 3])]
    parts += [b"x"] * (2 * spool.IOV_MAX + 5)
    writev, calls = os.writev, []

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        # A prefix of what was asked: at most 4,000 bytes, so it often ends inside a buffer.
        calls.append(len(buffers))
        assert len(buffers) <= spool.IOV_MAX
        return writev(fd, [memoryview(b"".join(buffers)[:4000])])

    monkeypatch.setattr(os, "writev", short_writev)
    target = tmp_path / "written"
    with target.open("wb") as file:
        spool.write_all(file.fileno(), parts)

    assert target.read_bytes() == b"".join(parts)
    assert len(calls) > 3


def _send_in_pieces(port: int, content_type: str, body: bytes, rng: np.random.Generator) -> int:
    """POST ``body`` in pieces of 1 byte to 300 KB, some after a pause; the response status."""
    head = (
        f"POST /classify HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        i = 0
        while i < len(body):
            n = int(rng.choice([1, 1000, 70_000, 300_000]))
            sock.sendall(body[i : i + n])
            i += n
            if rng.random() < 0.3:
                time.sleep(0.002)  # the server reads what came so far as its own chunk
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1])


def test_bodies_reach_the_spool_intact_through_the_server(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole receive path: uvicorn's protocol as the service runs it, the spool, the file.
    kept = tmp_path / "kept"
    kept.mkdir()
    (spool := tmp_path / "spool").mkdir()
    monkeypatch.setenv(faults.KEEP_ENV, str(kept))
    settings = make_test_settings(
        tiny_model,
        spool,
        max_upload_bytes=8 * upload.WRITE_BYTES,
    )
    rng = np.random.default_rng(3)
    payload = rng.bytes(3 * upload.WRITE_BYTES + 777)  # not a video: refused after the copy
    body, boundary = _multipart(payload)

    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        statuses = [
            _send_in_pieces(served.port, "video/mp4", payload, rng),
            _send_in_pieces(served.port, f"multipart/form-data; boundary={boundary}", body, rng),
        ]

    assert statuses == [415, 415]
    copies = sorted(kept.iterdir())
    assert [p.read_bytes() == payload for p in copies] == [True, True]
