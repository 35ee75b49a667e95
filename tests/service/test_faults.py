"""Faults the other suites leave out: inference that raises, a client that hangs up while its
video decodes, and admission under a busy decode pool (503 at once, before the upload).

Already covered elsewhere: a decode worker SIGKILLed or segfaulting mid-request and a
decode that hangs (``test_service_workers``), SIGTERM under load
(``test_service_lifecycle``), a client that disconnects mid-upload (``test_service_errors``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE
from service.pipeline import clip_block
from service.pipeline.inference import Model, load_model
from tests.conftest import MakeSettings, make_test_settings
from tests.support import faults
from tests.support.media import write_video
from tests.support.serving import Served, serve_in_thread

RAW = {"Content-Type": "video/mp4"}
DECODE_TIMEOUT_S = 2.0
SECRET = "password=hunter2 at /srv/secret/model.onnx"


class FailingModel:
    """The tiny model, raising (a secret in the message) on the batches ``fails`` picks
    once armed (warm-up runs first); records each armed run's batch size."""

    def __init__(self, path: Path, fails: Callable[[npt.NDArray[np.uint8]], bool]) -> None:
        self.model: Model = load_model(path, providers=("CPUExecutionProvider",))
        self.fails = fails
        self.armed = False
        self.batches: list[int] = []
        run = self.model.run

        def flaky(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
            if self.armed:
                self.batches.append(len(frames))
                if self.fails(frames):
                    raise RuntimeError(f"CUDA error: illegal memory access ({SECRET})")
            return run(frames)

        self.model.run = flaky  # type: ignore[method-assign]


def _dark(frames: npt.NDArray[np.uint8]) -> bool:
    return bool((frames.reshape(len(frames), -1).mean(axis=1) < 8).any())


@pytest.fixture(scope="module")
def black_mp4(media: Path) -> Path:
    return write_video(media / "black.mp4", np.zeros((16, 48, 64, 3), dtype=np.uint8), fps=8)


def post_all(base_url: str, bodies: list[bytes]) -> list[httpx.Response]:
    """Send ``bodies`` at once, one thread each (so their clips can share a batch)."""
    responses: list[httpx.Response | None] = [None] * len(bodies)

    def send(i: int) -> None:
        responses[i] = httpx.post(
            f"{base_url}/classify", content=bodies[i], headers=RAW, timeout=30
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


@pytest.fixture
def slow_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every decode takes 0.3 s more (the fault hook's delay), so that requests sent
    together are all admitted before the first clip reaches the batcher: the batcher
    then waits for them, and their clips share a run."""
    monkeypatch.setenv(faults.DELAY_ENV, "0.3")


@pytest.mark.usefixtures("slow_decodes")
def test_inference_error_fails_only_the_culprit(
    make_settings: MakeSettings, mp4: Path, black_mp4: Path
) -> None:
    """A batch that raises is retried clip by clip; only the clip that raises gets a 500."""
    settings = make_settings(decode_workers=4, max_batch_size=8, max_delay_ms=300.0)
    flaky = FailingModel(settings.model_path, _dark)  # a batch holding the black clip fails
    app = create_app(settings, model=flaky.model, decode_hook=faults.inject)
    with serve_in_thread(app) as served:
        flaky.armed = True
        good, bad = mp4.read_bytes(), black_mp4.read_bytes()
        responses = post_all(served.base_url, [good, bad, good, good])
        after = httpx.post(f"{served.base_url}/classify", content=good, headers=RAW, timeout=30)
        health = httpx.get(f"{served.base_url}/health")

    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    failed = responses[1]
    assert failed.headers["content-type"] == "application/problem+json"
    assert failed.json()["type"] == PROBLEM_BASE + "internal"
    assert failed.json()["request_id"] == failed.headers["x-request-id"]
    assert (
        "hunter2" not in failed.text and "secret" not in failed.text and "CUDA" not in failed.text
    )
    assert max(flaky.batches) > 1  # the failing run held other requests' clips too
    assert flaky.batches.count(1) >= 2  # ...which were then retried one by one
    assert after.status_code == 200 and health.status_code == 200


@pytest.mark.usefixtures("slow_decodes")
def test_transient_inference_error_is_retried(make_settings: MakeSettings, mp4: Path) -> None:
    settings = make_settings(decode_workers=3, max_batch_size=8, max_delay_ms=300.0)
    flaky = FailingModel(settings.model_path, lambda frames: len(flaky.batches) == 1)
    app = create_app(settings, model=flaky.model, decode_hook=faults.inject)
    with serve_in_thread(app) as served:
        flaky.armed = True  # the first run fails, every later one succeeds
        responses = post_all(served.base_url, [mp4.read_bytes()] * 3)

    assert [r.status_code for r in responses] == [200] * 3
    assert len(flaky.batches) >= 2


@pytest.fixture(scope="module")
def hooked(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = make_test_settings(
        tiny_model,
        tmp_path_factory.mktemp("faults-spool"),
        decode_workers=1,
        decode_timeout_s=DECODE_TIMEOUT_S,
        max_decode_wait_s=0.0,  # admit a decode only when the worker is free
    )
    with serve_in_thread(create_app(settings, decode_hook=faults.inject)) as served:
        yield served


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_client_gone_while_decoding_leaves_nothing_stuck(hooked: Served, mp4: Path) -> None:
    runtime = hooked.runtime
    body = faults.HANG + b"\0" * 1000
    head = (
        "POST /classify HTTP/1.1\r\nHost: t\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", hooked.port)) as sock:
        sock.sendall(head.encode() + body)
        _wait_for(lambda: runtime.decode_pool.pending == 1, 10, "the decode did not start")
    # The client is gone; the decode runs into its time limit and the worker is replaced.
    _wait_for(lambda: runtime.lifecycle.in_flight == 0, DECODE_TIMEOUT_S + 10, "request stuck")

    assert list(runtime.spool.path.iterdir()) == []
    assert clip_block.leftovers(clip_block.SHM_DIR) == []  # nor a block in /dev/shm
    assert runtime.decode_pool.pending == 0
    response = httpx.post(f"{hooked.base_url}/classify", content=mp4.read_bytes(), headers=RAW)
    assert response.status_code == 200


def test_busy_decoders_answer_503_before_reading_the_upload(hooked: Served, mp4: Path) -> None:
    """max_decode_wait_s=0: with the only worker busy, a new request is refused at once."""
    runtime, url = hooked.runtime, hooked.base_url
    assert httpx.post(f"{url}/classify", content=mp4.read_bytes(), headers=RAW).status_code == 200
    hung: list[httpx.Response] = []
    body = faults.HANG + b"\0" * 100
    hanging = threading.Thread(
        target=lambda: hung.append(httpx.post(f"{url}/classify", content=body, headers=RAW))
    )
    hanging.start()
    _wait_for(lambda: runtime.decode_pool.pending == 1, 10, "the decode was not admitted")

    # A declared 1 MiB body, none of it sent: the answer must come anyway, at once.
    head = (
        b"POST /classify HTTP/1.1\r\nHost: t\r\nContent-Type: video/mp4\r\n"
        b"Content-Length: 1048576\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", hooked.port), timeout=10) as sock:
        sock.sendall(head)
        reply = sock.recv(65536)
    hanging.join(30)

    assert reply.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in reply.lower()
    assert PROBLEM_BASE.encode() + b"overloaded" in reply
    assert [r.status_code for r in hung] == [504]  # the hanging decode timed out
    assert httpx.post(f"{url}/classify", content=mp4.read_bytes(), headers=RAW).status_code == 200
