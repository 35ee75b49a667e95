"""Start-up, readiness, draining and SIGTERM, in-process and with a real ``python -m service``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from service.app import create_app
from service.core.errors import PROBLEM_BASE, DrainingError
from service.core.lifecycle import Lifecycle
from service.pipeline.inference import Model, load_model
from tests.conftest import MakeSettings
from tests.support import (
    REPO,
    faults,
)
from tests.support.serving import serve_in_thread

RAW = {"Content-Type": "video/mp4"}


def gated_model(path: Path) -> tuple[Model, threading.Event]:
    """The tiny model, whose runs wait while the returned event is clear."""
    model = load_model(path, providers=("CPUExecutionProvider",))
    gate = threading.Event()
    run = model.run

    def gated(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        gate.wait(30)
        return run(frames)

    model.run = gated  # type: ignore[method-assign]
    return model, gate


def test_health_is_503_until_warmed_up(make_settings: MakeSettings, mp4: Path) -> None:
    settings = make_settings()
    model, gate = gated_model(settings.model_path)
    with serve_in_thread(create_app(settings, model=model), wait_ready=False) as served:
        starting = httpx.get(f"{served.base_url}/health")
        live = httpx.get(f"{served.base_url}/health/live")
        refused = httpx.post(f"{served.base_url}/classify", content=mp4.read_bytes(), headers=RAW)
        gate.set()
        deadline = time.monotonic() + 20
        while not served.runtime.lifecycle.ready and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = httpx.get(f"{served.base_url}/health")

    assert starting.status_code == 503
    assert starting.json()["status"] == "starting"
    assert "retry-after" in starting.headers
    assert live.status_code == 200
    assert refused.status_code == 503
    assert refused.json()["type"] == PROBLEM_BASE + "starting"
    assert ready.status_code == 200


def test_drain_finishes_in_flight_work_and_late_requests_then_closes_their_connections(
    make_settings: MakeSettings, mp4: Path
) -> None:
    """A request that reaches a draining server came on a connection it accepted before it
    stopped listening: served (nothing could replay it), its connection then closed."""
    settings = make_settings()
    model, gate = gated_model(settings.model_path)
    gate.set()
    data = mp4.read_bytes()
    with serve_in_thread(create_app(settings, model=model)) as served:
        gate.clear()
        answers: list[httpx.Response] = []

        def post() -> None:
            url = f"{served.base_url}/classify"
            answers.append(httpx.post(url, content=data, headers=RAW, timeout=30))

        worker = threading.Thread(target=post)
        worker.start()
        deadline = time.monotonic() + 20
        while served.runtime.lifecycle.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        drained: list[bool] = []
        drainer = threading.Thread(
            target=lambda: drained.append(served.call(served.runtime.drain()))
        )
        drainer.start()
        time.sleep(0.1)
        health = httpx.get(f"{served.base_url}/health")
        late = threading.Thread(target=post)
        late.start()
        while served.runtime.lifecycle.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        gate.set()
        worker.join(30)
        late.join(30)
        drainer.join(30)

    assert health.status_code == 503
    assert health.json()["status"] == "draining"
    assert health.headers["connection"] == "close"
    assert [r.status_code for r in answers] == [200, 200]
    # Both answers were sent while draining: neither connection takes another request.
    assert [r.headers.get("connection") for r in answers] == ["close", "close"]
    assert drained == [True]


def test_a_stopped_lifecycle_refuses_as_draining() -> None:
    lifecycle = Lifecycle(max_in_flight=4)
    lifecycle.mark_ready()
    lifecycle.begin_drain()
    lifecycle.check_admission()  # draining still admits
    lifecycle.mark_stopped()
    with pytest.raises(DrainingError):
        lifecycle.check_admission()


# -- a real process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(params=["1", "2"], ids=lambda n: f"{n}-processes")
def service_process(
    tiny_model: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``python -m service`` with two decode workers, in one serving process or two."""
    port, spool = free_port(), tmp_path / "spool"
    spool.mkdir()
    env = {
        **os.environ,
        "VIDLSTM_MODEL_PATH": str(tiny_model),
        "VIDLSTM_PORT": str(port),
        "VIDLSTM_TEMP_DIR": str(spool),
        "VIDLSTM_DECODE_WORKERS": "2",
        "VIDLSTM_INTRA_OP_THREADS": "1",
        "VIDLSTM_PROVIDERS": "cpu",
        "VIDLSTM_SERVER_PROCESSES": request.param,
        faults.DELAY_ENV: "1.0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faulty_service"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "service did not become ready"
            time.sleep(0.1)
        yield proc, base, spool
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def in_flight(client: httpx.AsyncClient) -> float:
    """The service's requests in flight, from ``/metrics`` (summed over processes)."""
    text = (await client.get("/metrics")).text
    (line,) = [x for x in text.splitlines() if x.startswith("vidlstm_requests_in_flight ")]
    return float(line.split()[1])


async def refused_soon(base: str, timeout_s: float = 10.0) -> None:
    """Until a new connection to ``base`` is refused (the drain closed the listener)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:
        while True:
            try:
                await fresh.get("/health")
            except httpx.ConnectError:
                return
            except (httpx.ReadError, httpx.RemoteProtocolError):
                pass  # queued as the listener closed, then reset
            assert time.monotonic() < deadline, "still accepting connections while draining"
            await asyncio.sleep(0.02)


async def test_sigterm_under_load_loses_no_request(
    service_process: tuple[subprocess.Popen[str], str, Path], mp4: Path
) -> None:
    proc, base, spool = service_process
    data = mp4.read_bytes()
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        # Two workers, 1 s per decode: four requests keep the server busy ~2 s.
        requests = [
            asyncio.create_task(client.post("/classify", content=data, headers=RAW))
            for _ in range(4)
        ]
        while await in_flight(client) < 4:  # in every serving process together
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        # No longer listening: a load balancer's next connect is refused and goes elsewhere.
        # (A connect the kernel queued just before every copy of the listener closed is
        # reset instead; on a busy machine that window can outlast a fixed sleep.)
        await refused_soon(base)
        async with httpx.AsyncClient(base_url=base, timeout=10) as fresh:
            with pytest.raises(httpx.ConnectError):
                await fresh.post("/classify", content=data, headers=RAW)
        answers = await asyncio.gather(*requests)

    output, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert [r.status_code for r in answers] == [200] * 4
    assert proc.returncode == 0, output
    assert list(spool.iterdir()) == []
    # Every log line is JSON, and each request got one line with its id.
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "service.access" and e["path"] == "/classify"]
    assert len(access) == 4
    assert all(e["request_id"] and "duration_ms" in e for e in access)


def test_bad_model_file_is_one_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx")
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        check=False,
        cwd=REPO,
        env={**os.environ, "VIDLSTM_MODEL_PATH": str(bogus), "VIDLSTM_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [json.loads(x) for x in result.stderr.splitlines()]
    assert line["level"] == "error"
    assert "cannot start" in line["msg"] and "onnxruntime cannot load" in line["msg"]


def test_invalid_settings_are_one_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        check=False,
        cwd=REPO,
        env={**os.environ, "VIDLSTM_MAX_BATCH_SIZE": "zero"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "max_batch_size" in result.stderr
