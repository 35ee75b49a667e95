"""A decode counts the frames it picks in a file another process reads: all of them by
the end, in one pass or in two halves at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.media.decode_job import DecodeJob, decode_job
from service.media.probe import Limits
from service.media.progress import FrameProgress, read_counts, read_progress
from tests.support.media import H264_MP4, moving_square_frames, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("progress") / "clip.mp4"
    return write_video(out, moving_square_frames(100, 96, 128), fmt=H264_MP4)


@pytest.mark.parametrize("halves", [False, True], ids=["one-pass", "halves"])
def test_a_decode_counts_every_frame_it_picks(clip: Path, tmp_path: Path, halves: bool) -> None:
    counter = tmp_path / "decode.progress"
    job = DecodeJob(
        num_frames=8,
        height=32,
        width=32,
        limits=Limits(),
        window_s=1.0,
        max_segments=8,
        halves=halves,
        progress_path=str(counter),
    )
    decoded = decode_job(str(clip), job)

    frames = len(decoded.clip) + decoded.window_clips.shape[0] * decoded.window_clips.shape[1]
    assert read_counts(counter) == (frames, frames)
    assert read_progress(counter) == 1.0


def test_progress_reads_as_a_fraction_and_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "p"
    assert read_progress(path) is None  # not written yet
    progress = FrameProgress(path)
    progress.start(4)
    assert read_progress(path) == 0.0
    for _ in range(4):
        progress.frame()
    assert read_progress(path) == 1.0  # the last frame is always written
    progress.start(8)
    progress.close()
    assert read_counts(path) == (0, 8)
