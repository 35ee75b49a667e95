"""The model repository over real HTTP: several models side by side, versions renamed in
and out under load, a broken version that fails alone."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from model_export.tiny import build_tiny_model
from service.app import create_app
from service.core.errors import PROBLEM_BASE, StartupError
from service.core.metrics import Metrics
from service.models.registry import ModelRegistry
from tests.conftest import MakeSettings
from tests.support.serving import Served, serve_in_thread

RAW = {"Content-Type": "video/mp4"}
POLL_S = 0.2
OTHER_LABELS = ("left", "right", "still")


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second model with labels and geometry of its own."""
    out = tmp_path_factory.mktemp("other") / "other.onnx"
    return build_tiny_model(out, labels=OTHER_LABELS, num_frames=4, height=24, width=24, seed=1)


def put_version(repo: Path, name: str, version: int, model: Path) -> Path:
    """Write ``model`` elsewhere in the repository, then rename it in (as a deploy would)."""
    staging = repo / name / f".{version}.tmp"
    staging.mkdir(parents=True)
    shutil.copy(model, staging / "model.onnx")
    final = repo / name / str(version)
    staging.rename(final)
    return final


def wait_for(served: Served, predicate: str, timeout: float = 30) -> dict[str, object]:
    """Poll ``GET /models`` until ``predicate`` (a name/version/state triple) holds."""
    name, version, state = predicate.split("/")
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{served.base_url}/models").json()
        for entry in body["models"]:
            if (entry["name"], entry["version"], entry["state"]) == (name, version, state):
                return dict(entry)
        assert time.monotonic() < deadline, f"never {predicate}: {body}"
        time.sleep(0.05)


@pytest.fixture
def repo(tmp_path: Path, tiny_model: Path, other_model: Path) -> Path:
    root = tmp_path / "models"
    put_version(root, "motion", 1, tiny_model)
    put_version(root, "other", 1, other_model)
    return root


@pytest.fixture
def served(repo: Path, make_settings: MakeSettings) -> Iterator[Served]:
    settings = make_settings(
        model_repository=repo, default_model="motion", model_poll_s=POLL_S, decode_workers=2
    )
    with serve_in_thread(create_app(settings)) as running:
        yield running


def classify(served: Served, video: bytes, **params: str) -> httpx.Response:
    url = f"{served.base_url}/classify"
    return httpx.post(url, content=video, headers=RAW, params=params, timeout=60)


def test_models_side_by_side(served: Served, mp4: Path, tiny_model: Path) -> None:
    video = mp4.read_bytes()
    listing = httpx.get(f"{served.base_url}/models").json()
    default = classify(served, video).json()
    other = classify(served, video, model="other").json()
    pinned = classify(served, video, model="motion", version="1").json()
    unknown = classify(served, video, model="nothing")
    no_version = classify(served, video, model="motion", version="9")
    model_other = httpx.get(f"{served.base_url}/model", params={"model": "other"}).json()
    health = httpx.get(f"{served.base_url}/health").json()
    metrics = httpx.get(f"{served.base_url}/metrics").text

    assert listing["default"] == "motion"
    entries = {(e["name"], e["version"]): e for e in listing["models"]}
    assert set(entries) == {("motion", "1"), ("other", "1")}
    assert entries["motion", "1"]["state"] == "ready"
    assert entries["motion", "1"]["default"] is True
    assert entries["other", "1"]["labels"] == list(OTHER_LABELS)
    assert entries["other", "1"]["input"]["num_frames"] == 4
    assert entries["motion", "1"]["sha256"] == _sha256(tiny_model)
    assert default["model"] == {"name": "motion", "version": "1"}
    assert other["model"] == {"name": "other", "version": "1"}
    assert set(other["probabilities"]) == set(OTHER_LABELS)
    assert pinned["model"] == default["model"]
    assert unknown.status_code == 404
    assert unknown.json()["type"] == PROBLEM_BASE + "model-not-found"
    assert no_version.status_code == 404
    assert model_other["labels"] == list(OTHER_LABELS)
    assert model_other["name"] == "other"
    assert health["model"] == {"name": "motion", "version": "1"}
    assert {(m["name"], m["state"]) for m in health["models"]} == {
        ("motion", "ready"),
        ("other", "ready"),
    }
    assert 'vidlstm_model_ready{model="other",provider="CPUExecutionProvider",version="1"} 1.0' in (
        metrics
    )
    assert 'vidlstm_model_requests_total{model="other",version="1"}' in metrics


def test_hot_reload_under_load_switches_once_and_fails_none(
    served: Served, repo: Path, mp4: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """4 clients for 10 s while version 2 is renamed in: every answer 200, and each
    client's answers go from version 1 to version 2 once. Then a corrupt version 3 is
    ``failed`` in /models while version 2 keeps serving."""
    video = mp4.read_bytes()
    answers: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    def client(seen: list[tuple[int, str]]) -> None:
        with httpx.Client(base_url=served.base_url, timeout=60) as http:
            while not stop.is_set():
                reply = http.post("/classify", content=video, headers=RAW)
                version = reply.json()["model"]["version"] if reply.status_code == 200 else "-"
                seen.append((reply.status_code, version))

    threads = [threading.Thread(target=client, args=(seen,)) for seen in answers]
    for thread in threads:
        thread.start()
    time.sleep(3)
    put_version(repo, "motion", 2, tiny_model)
    time.sleep(7)
    stop.set()
    for thread in threads:
        thread.join(60)

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(tiny_model.read_bytes()[:5000])
    put_version(repo, "motion", 3, broken)
    failed = wait_for(served, "motion/3/failed")
    after = classify(served, video)
    pinned = classify(served, video, model="motion", version="3")

    for seen in answers:
        assert seen, "a client got no answer"
        assert {status for status, _ in seen} == {200}, seen
        versions = [version for _, version in seen]
        switch = versions.index("2")
        assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}, versions
    assert "onnxruntime cannot load" in str(failed["reason"])
    assert after.json()["model"] == {"name": "motion", "version": "2"}
    assert pinned.status_code == 503
    assert pinned.json()["type"] == PROBLEM_BASE + "model-unavailable"


def test_removed_version_is_drained_then_unloaded(
    served: Served, repo: Path, mp4: Path, tiny_model: Path
) -> None:
    video = mp4.read_bytes()
    put_version(repo, "motion", 2, tiny_model)
    wait_for(served, "motion/2/ready")
    assert classify(served, video).json()["model"]["version"] == "2"

    shutil.rmtree(repo / "motion" / "2")
    deadline = time.monotonic() + 30
    while any(m["version"] == "2" for m in _motion(served)):
        assert time.monotonic() < deadline, "version 2 never unloaded"
        time.sleep(0.05)

    assert classify(served, video).json()["model"]["version"] == "1"
    assert classify(served, video, model="motion", version="2").status_code == 404


def test_a_broken_version_recovers_when_its_file_is_replaced(
    served: Served, repo: Path, mp4: Path, tiny_model: Path
) -> None:
    final = repo / "motion" / "2"
    final.mkdir()
    (final / "model.onnx").write_bytes(b"not onnx")
    wait_for(served, "motion/2/failed")
    assert classify(served, mp4.read_bytes()).json()["model"]["version"] == "1"

    replacement = final / ".model.onnx.tmp"
    shutil.copy(tiny_model, replacement)
    replacement.rename(final / "model.onnx")
    wait_for(served, "motion/2/ready")
    assert classify(served, mp4.read_bytes()).json()["model"]["version"] == "2"


def test_several_models_need_a_default(repo: Path, make_settings: MakeSettings) -> None:
    registry = ModelRegistry(make_settings(model_repository=repo), Metrics())
    with pytest.raises(StartupError, match="VIDLSTM_DEFAULT_MODEL"):
        asyncio.run(registry.start())


def _motion(served: Served) -> list[dict[str, str]]:
    body = httpx.get(f"{served.base_url}/models").json()
    return [m for m in body["models"] if m["name"] == "motion"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
