"""The one decode path: exact frames, every container, typed errors, cost."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from service.core.errors import (
    FrameTooLargeError,
    LimitExceededError,
    NotAVideoError,
    NoVideoStreamError,
    VideoError,
)
from service.media.clip import decode_at, decode_clip
from service.media.probe import Limits
from service.media.timestamps import segment_centres, window_bounds, window_centres
from tests.support.media import (
    COMMON_FORMATS,
    FFV1_MKV,
    H264_MP4,
    LOSSLESS_MP4,
    Format,
    expected_indices,
    noise_frames,
    write_video,
)


def smooth_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose brightness encodes their index (survives lossy codecs)."""
    levels = (np.arange(n) * 255 // max(n - 1, 1)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


@pytest.mark.parametrize("fmt", [LOSSLESS_MP4, FFV1_MKV], ids=lambda f: f.name)
def test_lossless_clip_gives_exact_frames_at_segment_centres(tmp_path: Path, fmt: Format) -> None:
    frames = noise_frames(50)
    path = write_video(tmp_path / f"clip{fmt.suffix}", frames, fmt=fmt)

    clip = decode_clip(path, num_frames=16, height=48, width=64)

    want = expected_indices(50, 16)
    assert clip.frames.shape == (16, 48, 64, 3)
    assert clip.frames.dtype == np.uint8
    np.testing.assert_array_equal(clip.frames, frames[want])
    np.testing.assert_allclose(clip.times_s, want / 25.0, atol=1e-6)


def test_fewer_frames_than_samples_repeats_frames(tmp_path: Path) -> None:
    frames = noise_frames(5)
    path = write_video(tmp_path / "short.mp4", frames, fmt=LOSSLESS_MP4)

    clip = decode_clip(path, num_frames=16, height=48, width=64)

    np.testing.assert_array_equal(clip.frames, frames[expected_indices(5, 16)])
    assert clip.decoded_frames == 5


@pytest.mark.parametrize("fmt", COMMON_FORMATS, ids=lambda f: f.name)
def test_every_common_container_decodes_in_order(tmp_path: Path, fmt: Format) -> None:
    frames = smooth_frames(40)
    path = write_video(tmp_path / f"clip{fmt.suffix}", frames, fmt=fmt)

    clip = decode_clip(path, num_frames=8, height=24, width=32)

    assert clip.frames.shape == (8, 24, 32, 3)
    assert clip.info.width == 64
    assert clip.info.height == 48
    assert clip.info.fps == pytest.approx(25.0)
    assert clip.info.duration_s == pytest.approx(1.6, abs=0.1)
    brightness = clip.frames.reshape(8, -1).mean(axis=1)
    expected = smooth_frames(40)[expected_indices(40, 8)].reshape(8, -1).mean(axis=1)
    np.testing.assert_allclose(brightness, expected, atol=8)


def test_decodes_from_a_small_in_memory_file_object(tmp_path: Path) -> None:
    frames = noise_frames(10)
    data = write_video(tmp_path / "c.mp4", frames, fmt=LOSSLESS_MP4).read_bytes()

    clip = decode_clip(io.BytesIO(data), num_frames=4, height=48, width=64)

    np.testing.assert_array_equal(clip.frames, frames[expected_indices(10, 4)])


def test_resizes_with_the_scaler(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", smooth_frames(10, 120, 160), fmt=H264_MP4)

    clip = decode_clip(path, num_frames=4, height=32, width=40)

    assert clip.frames.shape == (4, 32, 40, 3)


def test_fragmented_mp4(tmp_path: Path) -> None:
    frames = noise_frames(30)
    path = write_video(
        tmp_path / "frag.mp4",
        frames,
        fmt=LOSSLESS_MP4,
        container_options={"movflags": "frag_keyframe+empty_moov"},
    )

    clip = decode_clip(path, num_frames=6, height=48, width=64)

    assert clip.info.duration_s == pytest.approx(1.2, abs=0.05)
    np.testing.assert_array_equal(clip.frames, frames[expected_indices(30, 6)])


def test_raw_stream_without_duration_or_timestamps(tmp_path: Path) -> None:
    frames = smooth_frames(30)
    raw = Format("libx264", ".h264", container="h264", options=(("preset", "ultrafast"),))
    path = write_video(tmp_path / "raw.h264", frames, fmt=raw)
    with av.open(str(path)) as container:
        assert container.streams.video[0].duration is None

    clip = decode_clip(path, num_frames=6, height=48, width=64)

    assert clip.info.duration_s == pytest.approx(1.2, abs=0.1)
    brightness = clip.frames.reshape(6, -1).mean(axis=1)
    assert np.all(np.diff(brightness) > 0)


def test_mpegts_with_non_zero_start_time(tmp_path: Path) -> None:
    frames = smooth_frames(50)
    path = write_video(tmp_path / "c.ts", frames, fmt=COMMON_FORMATS[-1])

    clip = decode_clip(path, num_frames=5, height=48, width=64)

    assert clip.info.start_s > 0
    assert clip.times_s[0] >= clip.info.start_s
    brightness = clip.frames.reshape(5, -1).mean(axis=1)
    assert np.all(np.diff(brightness) > 0)


@pytest.mark.parametrize("codec", ["mpeg1video", "mpeg2video"])
def test_mpeg_program_stream_duration_is_measured_not_guessed(tmp_path: Path, codec: str) -> None:
    # A short, smooth clip: few bytes, so FFmpeg's guess of its length is far off.
    frames = smooth_frames(50, 64, 96)
    path = write_video(tmp_path / "c.mpg", frames, fmt=Format(codec, ".mpg", container="mpeg"))

    clip = decode_clip(path, num_frames=5, height=48, width=64)

    assert clip.info.duration_s == pytest.approx(2.0, abs=0.05)
    assert clip.info.num_frames == 50
    assert clip.times_s[-1] - clip.info.start_s > 1.5  # samples reach the end of the video
    brightness = clip.frames.reshape(5, -1).mean(axis=1)
    assert np.all(np.diff(brightness) > 0)


def test_long_video_with_dense_keyframes_decodes_few_frames(tmp_path: Path) -> None:
    frames = smooth_frames(3000, 48, 64)  # 2 minutes at 25 fps, a keyframe every 12
    path = write_video(
        tmp_path / "long.mp4",
        frames,
        gop=12,
        extra_options={"keyint_min": "12", "sc_threshold": "0"},
    )

    exact = decode_clip(path, num_frames=16, height=32, width=32)
    nearby = decode_clip(path, num_frames=16, height=32, width=32, tolerance=0.5)

    assert exact.decoded_frames <= 16 * 14
    assert nearby.decoded_frames <= 16 * 2
    segment = exact.info.duration_s / 16
    centres = segment_centres(exact.info.duration_s, 16)
    assert np.all(np.abs(nearby.times_s - centres) <= segment / 2)
    np.testing.assert_allclose(exact.times_s, expected_indices(3000, 16) / 25.0, atol=1e-6)


def test_decode_at_returns_frames_in_requested_order(tmp_path: Path) -> None:
    frames = noise_frames(20)
    path = write_video(tmp_path / "c.mp4", frames, fmt=LOSSLESS_MP4)
    times = np.array([0.5, 0.1, 0.7, 0.1])

    clip = decode_at(path, times, height=48, width=64)

    np.testing.assert_array_equal(clip.frames, frames[[12, 2, 17, 2]])


def test_window_sampling_covers_the_video() -> None:
    bounds = window_bounds(5.0, 2.0)
    np.testing.assert_allclose(bounds, [[0, 2], [2, 4], [4, 5]])
    centres = window_centres(bounds, 4)
    assert centres.shape == (3, 4)
    np.testing.assert_allclose(centres[2], [4.125, 4.375, 4.625, 4.875])


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00" * 10, np.random.default_rng(0).bytes(50_000), b"hello, this is text\n" * 100],
    ids=["empty", "zeros", "random", "text"],
)
def test_garbage_is_not_a_video(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(payload)

    with pytest.raises(NotAVideoError):
        decode_clip(path, num_frames=4, height=32, width=32)


def test_audio_only_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 16000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))

    with pytest.raises(NoVideoStreamError) as info:
        decode_clip(path, num_frames=4, height=32, width=32)
    assert isinstance(info.value, VideoError)
    assert info.value.status == 422


def test_pixel_cap_is_checked_before_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", smooth_frames(3, 120, 160))

    with pytest.raises(FrameTooLargeError) as info:
        decode_clip(path, num_frames=4, height=32, width=32, limits=Limits(max_pixels=100 * 100))
    assert info.value.status == 422


def test_duration_cap(tmp_path: Path) -> None:
    path = write_video(tmp_path / "c.mp4", smooth_frames(50))

    with pytest.raises(LimitExceededError):
        decode_clip(path, num_frames=4, height=32, width=32, limits=Limits(max_duration_s=1.0))


def test_truncated_file_is_an_error_or_a_clip(tmp_path: Path) -> None:
    data = write_video(tmp_path / "c.mp4", smooth_frames(50)).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])

    # moov at the end and cut off: nothing to read, a typed error.
    with pytest.raises(VideoError):
        decode_clip(path, num_frames=4, height=32, width=32)


@pytest.mark.parametrize("gop", [250, 12])
@pytest.mark.parametrize(
    ("tolerance", "skip_nonref", "skip_loop_filter"),
    [(0.0, False, False), (0.5, False, True), (0.25, True, False)],
)
def test_halves_on_an_idle_core_give_the_same_frames(
    tmp_path: Path, gop: int, tolerance: float, skip_nonref: bool, skip_loop_filter: bool
) -> None:
    """A short video sampled in two halves at once (what the service does for a lone
    request) gives exactly the frames of one pass, in every decode mode, with keyframes
    close (camera files); with keyframes far apart (x264's default) it is not split."""
    path = write_video(
        tmp_path / f"g{gop}.mp4",
        smooth_frames(200, 96, 128),  # 8 s at 25 fps
        gop=gop,
        extra_options={"keyint_min": str(gop), "sc_threshold": "0", "bf": "2"},
    )
    one, two = (
        decode_clip(path, num_frames=16, height=48, width=64, tolerance=tolerance,
                    skip_nonref=skip_nonref, skip_loop_filter=skip_loop_filter, halves=halves)
        for halves in (False, True)
    )  # fmt: skip
    np.testing.assert_array_equal(two.frames, one.frames)
    np.testing.assert_array_equal(two.times_s, one.times_s)
    if gop == 12:  # each half decodes about its own share
        assert two.decoded_frames <= one.decoded_frames + 16
    else:  # one keyframe for the whole clip: a later half would decode it all again
        assert two.decoded_frames == one.decoded_frames
