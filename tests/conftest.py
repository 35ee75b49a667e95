"""Shared fixtures: the tiny model (built once), real media files, and a running service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_export.tiny import build_tiny_model
from service.app import create_app
from service.core.settings import Settings
from tests.support.media import (
    COMMON_FORMATS,
    H264_MP4,
    moving_square_frames,
    write_video,
)
from tests.support.serving import Served, serve_in_thread

MakeSettings = Callable[..., Settings]

# Small enough for every format test, big enough for a 2 s 128x96 clip in any codec.
TEST_UPLOAD_CAP = 2 * 1024 * 1024


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny CNN+LSTM through the real exporter, once per session."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def make_test_settings(model: Path, temp_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test server: small pools and caps, one ORT thread (2 shared cores)."""
    values: dict[str, Any] = {
        "model_path": model,
        "temp_dir": temp_dir,
        "decode_workers": 1,
        "intra_op_threads": 1,
        "max_upload_bytes": TEST_UPLOAD_CAP,
        "providers": ("cpu",),
        "drain_timeout_s": 10.0,
        "max_segments": 8,
        "max_queue": 32,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_settings(tiny_model: Path, tmp_path: Path) -> MakeSettings:
    """Build settings around the tiny model, spooling uploads into this test's tmp dir."""
    spool = tmp_path / "spool"
    spool.mkdir()

    def make(**overrides: Any) -> Settings:
        return make_test_settings(tiny_model, spool, **overrides)

    return make


@pytest.fixture(scope="session")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One real server for the tests that need no special settings."""
    spool = tmp_path_factory.mktemp("spool")
    settings = make_test_settings(
        tiny_model,
        spool,
        decode_workers=2,
        max_batch_size=8,
        # Long enough that concurrent requests reliably share runs in the batching test.
        max_delay_ms=100.0,
        providers=("auto",),
    )
    with serve_in_thread(create_app(settings)) as served:
        yield served


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def videos(media: Path) -> dict[str, Path]:
    """A 2 s 128x96 moving square in every common format, keyed by format name."""
    frames = moving_square_frames(50, 96, 128)
    return {
        fmt.name: write_video(media / f"square-{fmt.codec}{fmt.suffix}", frames, fmt=fmt)
        for fmt in COMMON_FORMATS
    }


@pytest.fixture(scope="session")
def mp4(videos: dict[str, Path]) -> Path:
    return videos[H264_MP4.name]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures tests record (load-balancer counts, ...) under the summary."""
    for report in terminalreporter.stats.get("passed", []):
        for key, value in getattr(report, "user_properties", []):
            if key == "figures":
                terminalreporter.write_line(f"{report.nodeid}: {value}")
