"""segments=true on a video whose motion reverses halfway: the top label flips with it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from service.app import create_app
from tests.conftest import make_test_settings
from tests.support.direction_model import build_direction_model
from tests.support.media import moving_square_frames, write_video
from tests.support.serving import serve_in_thread


@pytest.fixture(scope="module")
def direction_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LSTM really trained (60 steps, ~3 s) on squares moving left or right."""
    return build_direction_model(tmp_path_factory.mktemp("direction") / "direction.onnx")


def test_top_label_flips_where_the_motion_reverses(direction_model: Path, tmp_path: Path) -> None:
    # 2 s moving right, then 2 s moving back left, at 25 fps.
    frames = np.concatenate(
        [moving_square_frames(50, direction=1), moving_square_frames(50, direction=-1)]
    )
    video = write_video(tmp_path / "there-and-back.mp4", frames)
    spool = tmp_path / "spool"
    spool.mkdir()
    settings = make_test_settings(direction_model, spool)

    with serve_in_thread(create_app(settings)) as served:
        response = httpx.post(
            f"{served.base_url}/classify",
            params={"segments": "true", "window_s": 2.0, "top_k": 1},
            files={"file": video.read_bytes()},
            timeout=30,
        )
        halves = [
            httpx.post(
                f"{served.base_url}/classify",
                content=write_video(
                    tmp_path / f"half{d}.mp4", moving_square_frames(50, direction=d)
                ).read_bytes(),
                headers={"Content-Type": "video/mp4"},
                timeout=30,
            ).json()["top"][0]["label"]
            for d in (1, -1)
        ]

    assert response.status_code == 200, response.text
    body = response.json()
    segments = body["segments"]
    assert [(s["start_s"], s["end_s"]) for s in segments] == [(0.0, 2.0), (2.0, 4.0)]
    assert [s["top"][0]["label"] for s in segments] == ["move_right", "move_left"]
    assert halves == ["move_right", "move_left"]
