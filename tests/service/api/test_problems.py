"""Bad uploads get the right problem, leave no temp file, and do not hurt the server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE
from service.pipeline import spool
from service.pipeline.spool import SPOOL_PREFIX, Spool
from tests.conftest import TEST_UPLOAD_CAP, MakeSettings
from tests.support.media import write_audio, write_big_frame
from tests.support.serving import Served, asgi_client, serve_in_thread

PROBLEM = "application/problem+json"


def spool_files(served: Served) -> list[Path]:
    return list(served.runtime.spool.path.iterdir())


def assert_problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"] == PROBLEM_BASE + slug
    assert body["status"] == status
    assert body["title"] and body["detail"]


def assert_still_serving(served: Served, mp4: Path) -> None:
    assert httpx.get(f"{served.base_url}/health").status_code == 200
    response = httpx.post(
        f"{served.base_url}/classify",
        content=mp4.read_bytes(),
        headers={"Content-Type": "video/mp4"},
        timeout=30,
    )
    assert response.status_code == 200
    assert spool_files(served) == []


@pytest.fixture(scope="module")
def bad_files(media: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    files = {
        "empty": media / "empty.mp4",
        "random": media / "random.mp4",
        "text": media / "notes.txt",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    files["text"].write_text("this is not a video\n" * 500)
    files["aac"] = write_audio(media / "tone.m4a", "aac")
    files["mp3"] = write_audio(media / "tone.mp3", "libmp3lame")
    files["opus"] = write_audio(media / "tone.ogg", "libopus")
    # 4100x4100 is just over FFmpeg's fuzzers' 4096x4096 cap, the default max_pixels.
    files["huge_frame"] = write_big_frame(media / "huge.avi", 4100, 4100)
    return files


@pytest.mark.parametrize(
    ("name", "status", "slug"),
    [
        ("empty", 400, "no-file"),
        ("random", 415, "not-a-video"),
        ("text", 415, "not-a-video"),
        ("aac", 422, "no-video-stream"),
        ("mp3", 422, "no-video-stream"),
        ("opus", 422, "no-video-stream"),
        ("huge_frame", 422, "frame-too-large"),
    ],
)
@pytest.mark.parametrize("upload", ["multipart", "raw"])
def test_bad_upload_gets_its_problem(
    server: Served,
    mp4: Path,
    bad_files: dict[str, Path],
    name: str,
    status: int,
    slug: str,
    upload: str,
) -> None:
    data = bad_files[name].read_bytes()
    if upload == "multipart":
        response = httpx.post(
            f"{server.base_url}/classify", files={"file": ("../../etc/passwd", data)}, timeout=30
        )
    else:
        response = httpx.post(
            f"{server.base_url}/classify",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )

    assert_problem(response, status, slug)
    assert spool_files(server) == []
    if name == "huge_frame":
        assert "4100x4100" in response.json()["detail"]


def test_server_is_healthy_after_bad_uploads(
    server: Served, mp4: Path, bad_files: dict[str, Path]
) -> None:
    for path in bad_files.values():
        httpx.post(f"{server.base_url}/classify", files={"file": path.read_bytes()}, timeout=30)
    assert_still_serving(server, mp4)


@pytest.mark.parametrize(
    ("kwargs", "status", "slug"),
    [
        ({"files": {"note": (None, b"no file here")}}, 400, "no-file"),
        ({"files": {"video": b"abc"}}, 400, "no-file"),
        (
            {"content": b"abc", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported-media-type",
        ),
        (
            {"content": b"a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported-media-type",
        ),
        ({"content": b"abc"}, 415, "unsupported-media-type"),
        (
            {
                "content": b"--x\r\ngarbage",
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
            400,
            "bad-request",
        ),
        (
            {"content": b"abc", "headers": {"Content-Type": "multipart/form-data"}},
            400,
            "bad-request",
        ),
    ],
)
def test_malformed_requests(
    server: Served, kwargs: dict[str, object], status: int, slug: str
) -> None:
    response = httpx.post(f"{server.base_url}/classify", timeout=30, **kwargs)  # type: ignore[arg-type]

    assert_problem(response, status, slug)
    assert spool_files(server) == []


def _raw_request(served: Served, head: bytes, body: bytes = b"", *, close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(head + body)
        if close:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _hang_up_outcomes(served: Served) -> dict[str, float]:
    registry = served.runtime.metrics.registry
    return {
        slug: registry.get_sample_value("vidlstm_rejections_total", {"reason": slug}) or 0.0
        for slug in ("client-disconnected", "upload-timeout")
    }


def _hang_up_pending(served: Served) -> bool:
    return bool(
        spool_files(served)
        or served.runtime.lifecycle.in_flight
        or not sum(_hang_up_outcomes(served).values())
    )


def test_declared_length_over_cap_is_refused_before_reading(server: Served, mp4: Path) -> None:
    head = (
        b"POST /classify HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: video/mp4\r\n"
        + f"Content-Length: {TEST_UPLOAD_CAP + 1}\r\n\r\n".encode()
    )
    # Not a byte of the body is sent: the answer must come anyway.
    reply = _raw_request(server, head)

    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b"payload-too-large" in reply
    assert_still_serving(server, mp4)


def test_client_disconnect_mid_upload_leaves_no_temp_file(
    make_settings: MakeSettings, mp4: Path, record_property: Callable[[str, object], None]
) -> None:
    """Half a body, then the client hangs up: the temp file goes and the slot is freed.

    The server learns of the hang-up from the socket (400 client-disconnected, nobody
    reads it) or, should the close never reach it, from the stall timeout (408): the
    guarantee is the same either way, and the figure says which one fired.
    """
    stall_s = 3.0
    settings = make_settings(upload_idle_timeout_s=stall_s)
    with serve_in_thread(create_app(settings)) as served:
        size = TEST_UPLOAD_CAP - 1000
        head = (
            b"POST /classify HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            b"Content-Type: video/mp4\r\n" + f"Content-Length: {size}\r\n\r\n".encode()
        )
        _raw_request(served, head, b"\0" * (size // 2), close=True)

        # Bounded by the stall timeout, plus slack for 2 loaded cores.
        deadline = time.monotonic() + stall_s + 30
        while _hang_up_pending(served) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool_files(served) == []
        assert served.runtime.lifecycle.in_flight == 0
        seen = _hang_up_outcomes(served)
        assert sum(seen.values()) == 1, seen
        record_property("figures", f"client hang-up mid-upload answered as: {seen}")
        assert_still_serving(served, mp4)


@pytest.mark.parametrize("content_type", ["video/mp4", "multipart/form-data; boundary=xyz"])
async def test_streamed_upload_over_cap_stops_reading(
    make_settings: MakeSettings, content_type: str
) -> None:
    """413 after pulling no more than the cap plus one chunk of a 'never-ending' body."""
    cap, chunk = 256 * 1024, 16 * 1024
    settings = make_settings(max_upload_bytes=cap)
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        if content_type.startswith("multipart"):
            pulled += 64
            yield b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.ljust(64)
        for _ in range(10_000):  # 160 MiB if it were all read
            pulled += chunk
            yield b"\0" * chunk

    async with asgi_client(create_app(settings)) as client:
        response = await client.post(
            "/classify", content=endless(), headers={"Content-Type": content_type}
        )

    assert_problem(response, 413, "payload-too-large")
    assert pulled <= cap + chunk
    assert list(settings.temp_dir.iterdir()) == []


async def test_a_big_upload_is_removed_on_a_thread_before_the_answer(
    make_settings: MakeSettings, mp4: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed_on: list[str] = []
    unlink = Path.unlink

    def recording_unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name.startswith("vidlstm-") and self.suffix == ".upload":
            removed_on.append(threading.current_thread().name)
        unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(spool, "REMOVE_IN_THREAD_BYTES", 1)
    monkeypatch.setattr(Path, "unlink", recording_unlink)
    settings = make_settings()
    async with asgi_client(create_app(settings)) as client:
        response = await client.post(
            "/classify", content=mp4.read_bytes(), headers={"Content-Type": "video/mp4"}
        )
        spooled = [f for f in settings.temp_dir.rglob("*") if f.is_file()]

    assert response.status_code == 200
    assert spooled == []
    assert len(removed_on) == 1
    assert removed_on[0] != threading.main_thread().name


async def test_video_over_duration_limit(make_settings: MakeSettings, mp4: Path) -> None:
    settings = make_settings(max_duration_s=1.0)
    async with asgi_client(create_app(settings)) as client:
        response = await client.post(
            "/classify", content=mp4.read_bytes(), headers={"Content-Type": "video/mp4"}
        )

    assert_problem(response, 422, "limit-exceeded")
    assert "2 s" in response.json()["detail"]


async def test_internal_error_is_500_problem_without_internals(
    make_settings: MakeSettings, mp4: Path
) -> None:
    app = create_app(make_settings())

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database password is hunter2 at /secret/path")

    async with asgi_client(app) as client:
        app.state.runtime.decode_pool.decode = broken
        response = await client.post(
            "/classify",
            content=mp4.read_bytes(),
            headers={"Content-Type": "video/mp4", "X-Request-ID": "boom-1"},
        )
        health = await client.get("/health")

    assert_problem(response, 500, "internal")
    assert "hunter2" not in response.text and "secret" not in response.text
    assert response.headers["x-request-id"] == "boom-1"
    assert response.json()["request_id"] == "boom-1"
    assert health.status_code == 200


def test_spool_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"{SPOOL_PREFIX}{2**22 + 1}-abc"  # above Linux's pid_max
    live = tmp_path / f"{SPOOL_PREFIX}{os.getpid()}-def"
    for folder in (dead, live):
        folder.mkdir()
        (folder / "vidlstm-x.upload").write_bytes(b"left behind")
    spool = Spool(tmp_path)

    mine = spool.open()
    assert not dead.exists()
    assert live.exists()
    assert mine.parent == tmp_path
    spool.close()
    assert not mine.exists()
