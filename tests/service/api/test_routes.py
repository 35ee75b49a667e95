"""The HTTP API of a running server: classify in every format, parameters, docs, metrics."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_export.data.synth import LABELS
from service.core.errors import PROBLEM_BASE
from tests.support.media import COMMON_FORMATS, H264_MP4, moving_square_frames, write_video
from tests.support.serving import Served

TINY_LABELS = list(LABELS)  # model_export.tiny's default: the synthetic classes
FORMAT_CODECS = {
    "libx264.mp4": "h264",
    "libx264.mkv": "h264",
    "libvpx-vp9.webm": "vp9",
    "mpeg4.avi": "mpeg4",
    "mjpeg.avi": "mjpeg",
    "mpeg2video.ts": "mpeg2video",
}


def classify(served: Served, path: Path, **params: str | int | float) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(
            f"{served.base_url}/classify",
            params=params,
            files={"file": ("clip.bin", f, "application/octet-stream")},
            timeout=30,
        )


def assert_valid_result(body: dict[str, Any], *, top_k: int = 5) -> None:
    probs = body["probabilities"]
    assert isinstance(probs, dict)
    assert list(probs) == TINY_LABELS
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-9)
    top = body["top"]
    assert isinstance(top, list) and len(top) == top_k
    scores = [t["score"] for t in top]
    assert scores == sorted(scores, reverse=True)
    assert top[0]["score"] == max(probs.values())
    assert all(probs[t["label"]] == t["score"] for t in top)


@pytest.mark.parametrize("fmt", [f.name for f in COMMON_FORMATS])
def test_classify_every_format(server: Served, videos: dict[str, Path], fmt: str) -> None:
    response = classify(server, videos[fmt])

    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid_result(body)
    assert body["model"] == {"name": "vidlstm-tiny", "version": "0.0.0"}
    video = body["video"]
    assert video["codec"] == FORMAT_CODECS[fmt]
    assert (video["width"], video["height"]) == (128, 96)
    assert video["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert video["frames_used"] == 8
    assert set(body["timing_ms"]) == {"upload", "decode", "queue", "inference", "total"}
    assert body["segments"] is None


@pytest.mark.parametrize("content_type", ["video/mp4", "application/octet-stream"])
def test_raw_body_upload(server: Served, mp4: Path, content_type: str) -> None:
    response = httpx.post(
        f"{server.base_url}/classify",
        content=mp4.read_bytes(),
        headers={"Content-Type": content_type},
        timeout=30,
    )

    assert response.status_code == 200, response.text
    assert_valid_result(response.json())


def test_raw_and_multipart_agree(server: Served, mp4: Path) -> None:
    raw = httpx.post(
        f"{server.base_url}/classify",
        content=mp4.read_bytes(),
        headers={"Content-Type": "video/mp4"},
        timeout=30,
    )
    form = classify(server, mp4)

    assert raw.json()["probabilities"] == form.json()["probabilities"]


def test_top_k(server: Served, mp4: Path) -> None:
    body = classify(server, mp4, top_k=3).json()
    assert_valid_result(body, top_k=3)
    assert len(classify(server, mp4, top_k=len(TINY_LABELS)).json()["top"]) == len(TINY_LABELS)
    # More than the classes: all of them (which ones a model has is not the schema's).
    assert len(classify(server, mp4, top_k=99).json()["top"]) == len(TINY_LABELS)


def test_window_s_implies_segments(server: Served, mp4: Path) -> None:
    body = classify(server, mp4, window_s=0.5).json()
    assert body["window_s"] is not None
    assert body["segments"]


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"top_k": 0}, ["query", "top_k"]),
        ({"top_k": "many"}, ["query", "top_k"]),
        ({"segments": "maybe"}, ["query", "segments"]),
        ({"segments": "true", "window_s": -1}, ["query", "window_s"]),
    ],
)
def test_invalid_parameters_are_422_problems(
    server: Served, mp4: Path, params: dict[str, str | int], loc: list[str]
) -> None:
    response = classify(server, mp4, **params)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "invalid-parameter"
    assert body["errors"][0]["loc"] == loc
    assert "input" not in body["errors"][0]


@pytest.mark.parametrize(
    "params",
    [
        {"segments": "true", "window_s": 0.01},  # below min_window_s
        {"segments": "true", "window_s": 10_000},  # above max_window_s
    ],
)
def test_out_of_range_parameters(
    server: Served, mp4: Path, params: dict[str, str | int | float]
) -> None:
    """Bounds from the settings; the schema states them too (below)."""
    response = classify(server, mp4, **params)

    assert response.status_code == 422
    assert response.json()["type"] == PROBLEM_BASE + "invalid-parameter"


@pytest.fixture(scope="module")
def long_video(media: Path) -> Path:
    """3.2 s at 25 fps: windows of 1 s give three full windows and a short last one."""
    return write_video(media / "long.mp4", moving_square_frames(80, 96, 128), fmt=H264_MP4)


def test_segments_cover_the_video_contiguously(server: Served, long_video: Path) -> None:
    response = classify(server, long_video, segments="true", window_s=1.0, top_k=2)

    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid_result(body, top_k=2)
    segments = body["segments"]
    starts = [s["start_s"] for s in segments]
    ends = [s["end_s"] for s in segments]
    assert starts == pytest.approx([0, 1, 2, 3], abs=1e-6)
    assert ends == pytest.approx([1, 2, 3, 3.2], abs=1e-6)
    assert segments[-1]["end_s"] == pytest.approx(body["video"]["duration_s"])
    assert body["window_s"] == 1.0
    for segment in segments:
        assert len(segment["top"]) == 2
        assert {t["label"] for t in segment["top"]} <= set(TINY_LABELS)


def test_segments_default_window_and_cap(server: Served, long_video: Path) -> None:
    default = classify(server, long_video, segments="true").json()
    assert len(default["segments"]) == 2  # the 2 s default window
    # 0.25 s windows would make 13 of them; max_segments=8 stretches them to 0.4 s.
    capped = classify(server, long_video, segments="true", window_s=0.25).json()
    assert len(capped["segments"]) == 8
    assert capped["window_s"] == pytest.approx(0.4)
    assert capped["segments"][-1]["end_s"] == pytest.approx(3.2)


def test_model_endpoint(server: Served) -> None:
    body = httpx.get(f"{server.base_url}/model").json()

    assert body["labels"] == TINY_LABELS
    assert body["input"] == {
        "num_frames": 8,
        "height": 32,
        "width": 32,
        "channels": 3,
        "dtype": "uint8",
        "layout": "NTHWC",
    }
    assert body["sampling"] == "tsn-centre"
    assert body["provider"] == "CPUExecutionProvider"
    keys = {k.removeprefix("vidlstm.") for k in body["metadata"]}
    assert {"labels", "num_frames", "height", "width", "sampling", "name", "version"} <= keys
    assert {"data_fingerprint", "metrics", "created"} <= keys
    assert body["metrics"]["note"].startswith("tiny test model")


def test_health_and_liveness(server: Served) -> None:
    health = httpx.get(f"{server.base_url}/health")
    live = httpx.get(f"{server.base_url}/health/live")

    assert health.status_code == 200
    assert health.json()["status"] == "ready"
    assert health.json()["model"] == {"name": "vidlstm-tiny", "version": "0.0.0"}
    assert health.json()["provider"] == "CPUExecutionProvider"
    assert live.status_code == 200


def test_request_id_is_echoed_or_made(server: Served) -> None:
    given = httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "abc-123"})
    made = httpx.get(f"{server.base_url}/health")
    rejected = httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "x" * 500})

    assert given.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", rejected.headers["x-request-id"])


def test_problem_names_the_request(server: Served) -> None:
    response = httpx.post(
        f"{server.base_url}/classify",
        content=b"not a video",
        headers={"Content-Type": "video/mp4", "X-Request-ID": "req-42"},
    )

    assert response.json()["request_id"] == "req-42"
    assert response.json()["instance"] == "urn:vidlstm:request:req-42"


def test_routing_errors_are_problems(server: Served) -> None:
    missing = httpx.get(f"{server.base_url}/nothing-here")
    wrong_method = httpx.get(f"{server.base_url}/classify")

    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == PROBLEM_BASE + "not-found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == PROBLEM_BASE + "method-not-allowed"
    assert wrong_method.headers["allow"] == "POST"


def test_openapi_documents_responses_and_problems(server: Served) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    docs = httpx.get(f"{server.base_url}/docs")

    assert docs.status_code == 200
    schemas = spec["components"]["schemas"]
    assert {"ClassifyResponse", "Problem", "HealthResponse", "ModelResponse", "Segment"} <= set(
        schemas
    )
    classify_op = spec["paths"]["/classify"]["post"]
    assert set(classify_op["requestBody"]["content"]) == {
        "multipart/form-data",
        "video/*",
        "application/octet-stream",
    }
    for status in ("400", "413", "415", "422", "503", "504"):
        assert "application/problem+json" in classify_op["responses"][status]["content"]
    assert {p["name"] for p in classify_op["parameters"]} == {
        "top_k",
        "segments",
        "window_s",
        "model",
        "version",
    }
    (window,) = (p for p in classify_op["parameters"] if p["name"] == "window_s")
    (number,) = (o for o in window["schema"]["anyOf"] if o["type"] == "number")
    settings = server.runtime.settings
    assert (number["minimum"], number["maximum"]) == (settings.min_window_s, settings.max_window_s)


def _metric(text: str, name: str) -> float:
    pattern = rf"^{re.escape(name)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_concurrent_requests_share_onnx_runs(server: Served, mp4: Path) -> None:
    data = mp4.read_bytes()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        before = (await client.get("/metrics")).text
        responses = await asyncio.gather(
            *(
                client.post("/classify", content=data, headers={"Content-Type": "video/mp4"})
                for _ in range(8)
            )
        )
        after = (await client.get("/metrics")).text

    assert [r.status_code for r in responses] == [200] * 8
    runs = _metric(after, "vidlstm_onnx_runs_total") - _metric(before, "vidlstm_onnx_runs_total")
    clips = _metric(after, "vidlstm_clips_inferred_total") - _metric(
        before, "vidlstm_clips_inferred_total"
    )
    assert clips == 8
    assert runs < clips
    batched = _metric(after, "vidlstm_batch_size_sum") - _metric(before, "vidlstm_batch_size_sum")
    assert batched == 8
    # Identical clips get the same answer whichever batch they were in.
    first = responses[0].json()["probabilities"]
    for r in responses[1:]:
        assert r.json()["probabilities"] == pytest.approx(first, abs=1e-5)


def test_metrics_exposition(server: Served) -> None:
    text = httpx.get(f"{server.base_url}/metrics").text

    for name in (
        "vidlstm_requests_total",
        "vidlstm_request_duration_seconds_bucket",
        "vidlstm_decode_seconds_bucket",
        "vidlstm_inference_seconds_bucket",
        "vidlstm_batch_size_bucket",
        "vidlstm_queue_depth",
        "vidlstm_onnx_runs_total",
        "vidlstm_model_info",
    ):
        assert name in text
    assert 'route="/classify"' in text
    # The warm-up's runs already took CPU: on the calling thread, never more than their wall time.
    cpu = float(text.split("\nvidlstm_inference_cpu_seconds_total ")[1].split()[0])
    wall = float(text.split("\nvidlstm_inference_seconds_sum ")[1].split()[0])
    assert 0 < cpu <= wall
