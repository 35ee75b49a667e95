"""The faster decode modes: which frames they choose and how many they decode.

Every assertion is on frame choices and counts, never on time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from service.core.errors import NotAVideoError
from service.media import halves as decode
from service.media.clip import Clip, DecodeMode, decode_at, decode_clip
from service.media.cursor import PacketCursor
from service.media.decode_job import DecodeJob, decode_job
from service.media.probe import Limits, open_video
from service.media.timestamps import segment_centres
from tests.support.media import H264_MP4, MJPEG_AVI, write_video

# Like camera and web files: B-frames (some not referenced) and the deblocking filter on.
WEB_H264 = {"x264-params": "bframes=2:b-adapt=0:deblock=1:cabac=1:scenecut=0"}
FPS = 25


def index_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose brightness encodes their index, with a little texture to code."""
    levels = (np.arange(n) * 255 // max(n - 1, 1)).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()
    frames[:, ::8, ::8] = 255 - frames[:, ::8, ::8]
    return frames


def web_video(tmp_path: Path, n: int, *, gop: int) -> Path:
    return write_video(
        tmp_path / f"web-{n}-{gop}.mp4",
        index_frames(n),
        fmt=H264_MP4,
        gop=gop,
        extra_options={**WEB_H264, "keyint_min": str(gop)},
    )


def keyframe_times(path: Path) -> set[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            round(float(p.pts * p.time_base), 6)
            for p in container.demux(stream)
            if p.is_keyframe and p.pts is not None and p.time_base is not None
        }


def within_segments(times: np.ndarray, duration: float, count: int) -> bool:
    centres = segment_centres(duration, count)
    return bool(np.all(np.abs(times - centres) <= duration / count / 2 + 1e-6))


def test_skip_nonref_chooses_the_same_frames_and_decodes_fewer(tmp_path: Path) -> None:
    path = web_video(tmp_path, 120, gop=250)

    exact = decode_clip(path, num_frames=8, height=24, width=32)
    skipping = decode_clip(path, num_frames=8, height=24, width=32, skip_nonref=True)

    np.testing.assert_array_equal(skipping.times_s, exact.times_s)
    np.testing.assert_array_equal(skipping.frames, exact.frames)
    assert skipping.decoded_frames < exact.decoded_frames


def test_tolerance_takes_keyframes_inside_each_segment(tmp_path: Path) -> None:
    path = web_video(tmp_path, 250, gop=12)  # 10 s, a keyframe every 12 frames

    clip = decode_clip(path, num_frames=16, height=24, width=32, tolerance=0.5, skip_nonref=True)

    assert within_segments(clip.times_s, clip.info.duration_s, 16)
    assert np.all(np.diff(clip.times_s) > 0)
    keys = keyframe_times(path)
    taken = sum(round(float(t), 6) in keys for t in clip.times_s)
    assert taken >= 12  # most segments hold a keyframe (15.6 frames each, one key per 12)
    assert clip.decoded_frames <= 2 * 16  # against 244 for the exact frames


def test_tolerance_without_keyframes_decodes_to_the_window_and_stops(tmp_path: Path) -> None:
    path = web_video(tmp_path, 250, gop=250)

    exact = decode_clip(path, num_frames=16, height=24, width=32)
    near = decode_clip(path, num_frames=16, height=24, width=32, tolerance=0.5)

    assert within_segments(near.times_s, near.info.duration_s, 16)
    assert near.decoded_frames <= exact.decoded_frames
    # The first frame inside each segment: its start, not its centre.
    starts = np.arange(16) * near.info.duration_s / 16
    assert np.all(near.times_s - starts < 1.0 / FPS + 1e-6)


def test_intra_only_video_takes_the_frame_nearest_each_centre(tmp_path: Path) -> None:
    frames = index_frames(100)
    path = write_video(tmp_path / "intra.avi", frames, fmt=MJPEG_AVI)

    exact = decode_clip(path, num_frames=8, height=48, width=64)
    near = decode_clip(path, num_frames=8, height=48, width=64, tolerance=0.5)

    # Every frame is a keyframe: jumping costs no more than decoding forward.
    assert near.decoded_frames <= 8 + 1
    assert exact.decoded_frames > 80
    np.testing.assert_allclose(near.times_s[1:], exact.times_s[1:], atol=1.0 / FPS + 1e-6)


def test_skip_loop_filter_keeps_the_choices_and_changes_pixels_a_little(tmp_path: Path) -> None:
    path = web_video(tmp_path, 60, gop=250)

    exact = decode_clip(path, num_frames=6, height=48, width=64)
    rough = decode_clip(path, num_frames=6, height=48, width=64, skip_loop_filter=True)

    np.testing.assert_array_equal(rough.times_s, exact.times_s)
    difference = np.abs(rough.frames.astype(int) - exact.frames.astype(int))
    assert difference.mean() < 8


def test_exact_mode_is_the_default() -> None:
    assert DecodeMode() == DecodeMode(tolerance=0.0, skip_nonref=False, skip_loop_filter=False)
    with pytest.raises(ValueError, match="tolerance"):
        DecodeMode(tolerance=0.75)


def test_per_time_tolerance_units_keep_each_frame_in_its_own_window(tmp_path: Path) -> None:
    path = web_video(tmp_path, 250, gop=12)
    times = np.array([5.0, 1.0, 1.2, 9.0])
    units = np.array([5.0, 0.1, 0.1, 0.1])  # a wide window for the first, narrow for the rest

    clip = decode_at(
        path, times, height=24, width=32, tolerance=0.5, tolerance_unit=lambda i: units
    )

    assert np.all(np.abs(clip.times_s - times) <= units / 2 + 1.0 / FPS)
    assert clip.times_s[1] <= clip.times_s[2]  # never past the next time: one forward pass


def test_segments_job_uses_each_windows_own_segment(tmp_path: Path) -> None:
    path = web_video(tmp_path, 250, gop=12)
    job = DecodeJob(
        num_frames=4,
        height=24,
        width=32,
        limits=Limits(),
        window_s=2.5,
        max_segments=8,
        mode=DecodeMode(tolerance=0.5, skip_nonref=True),
    )

    decoded = decode_job(str(path), job)

    assert decoded.window_clips.shape == (4, 4, 24, 32, 3)
    assert decoded.decoded_frames < 250


def _long_web_video(tmp_path: Path) -> Path:
    # 48 s, a keyframe a second, two B-frames: the codec holds each keyframe back two packets.
    return web_video(tmp_path, 1200, gop=25)


def _record_cursors(monkeypatch: pytest.MonkeyPatch) -> list[PacketCursor]:
    """Every PacketCursor made from now on, in order."""
    decoders: list[PacketCursor] = []
    init = PacketCursor.__init__

    def recorded(self: PacketCursor, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        decoders.append(self)

    monkeypatch.setattr(PacketCursor, "__init__", recorded)
    return decoders


def _without_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PacketCursor, "upcoming_keyframe", lambda self: None)


def test_seeks_decode_each_kept_keyframe_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _long_web_video(tmp_path)
    decoders = _record_cursors(monkeypatch)
    alone = decode_clip(path, num_frames=16, height=24, width=32, tolerance=0.5)
    _without_alone(monkeypatch)
    fed = decode_clip(path, num_frames=16, height=24, width=32, tolerance=0.5)

    np.testing.assert_array_equal(alone.times_s, fed.times_s)
    np.testing.assert_array_equal(alone.frames, fed.frames)
    keys = keyframe_times(path)
    assert all(round(float(t), 6) in keys for t in alone.times_s)
    # The first sample is decoded from the start (3 packets); each of the 15 seeks sends
    # one packet alone, where the codec would otherwise wait for two more.
    assert decoders[0].packets == 3 + 15
    assert decoders[1].packets == 3 * 16


def test_a_cursor_decoding_on_after_a_lone_keyframe_seeks_back(tmp_path: Path) -> None:
    path = _long_web_video(tmp_path)

    def frames_after_seek(alone: bool) -> list[tuple[float, bytes]]:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            decoder = PacketCursor(container, stream, Limits())
            assert decoder.seek(10.0)
            first = decoder.keyframe_alone() if alone else decoder.next_frame()
            out = [first]
            out += [decoder.next_frame() for _ in range(30)]
            return [
                (float(f.time), f.to_ndarray(format="gray").tobytes()) for f in out if f is not None
            ]

    alone, fed = frames_after_seek(True), frames_after_seek(False)

    assert alone[0][0] == 10.0
    assert [t for t, _ in alone] == [t for t, _ in fed]
    assert [px for _, px in alone] == [px for _, px in fed]


def _halves_and_whole(
    path: Path, monkeypatch: pytest.MonkeyPatch, **mode: Any
) -> tuple[Clip, Clip, list[PacketCursor]]:
    decoders = _record_cursors(monkeypatch)
    monkeypatch.setattr(decode, "SPLIT_MIN_DURATION_S", 30.0)
    halves = decode_clip(path, num_frames=16, height=24, width=32, **mode)
    monkeypatch.setattr(decode, "SPLIT_MIN_DURATION_S", np.inf)
    whole = decode_clip(path, num_frames=16, height=24, width=32, **mode)
    return halves, whole, decoders


@pytest.mark.parametrize("tolerance", [0.0, 0.5])
def test_a_long_video_is_sampled_in_two_halves_with_the_same_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tolerance: float
) -> None:
    path = _long_web_video(tmp_path)  # 48 s: over the (lowered) 30-s threshold

    halves, whole, decoders = _halves_and_whole(
        path, monkeypatch, tolerance=tolerance, skip_nonref=True
    )

    assert len(decoders) == 3  # two halves, then one whole pass
    np.testing.assert_array_equal(halves.times_s, whole.times_s)
    np.testing.assert_array_equal(halves.frames, whole.frames)
    assert halves.decoded_frames == decoders[0].decoded + decoders[1].decoded
    assert {decoders[0].decoded, decoders[1].decoded} != {0}


def test_a_short_video_or_a_file_object_is_sampled_in_one_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = web_video(tmp_path, 250, gop=12)  # 10 s
    decoders = _record_cursors(monkeypatch)
    monkeypatch.setattr(decode, "SPLIT_MIN_DURATION_S", 30.0)
    decode_clip(short, num_frames=16, height=24, width=32)
    with _long_web_video(tmp_path).open("rb") as file:
        decode_clip(file, num_frames=16, height=24, width=32)

    assert len(decoders) == 2


def test_a_failing_half_fails_the_clip_after_both_halves_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _long_web_video(tmp_path)
    monkeypatch.setattr(decode, "SPLIT_MIN_DURATION_S", 30.0)
    finished: list[str] = []
    sample = decode.Part.sample

    def failing_first(self: Any, container: Any, stream: Any, wanted: Any, slack: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            finished.append("first")
            raise NotAVideoError("broken earlier half")
        result = sample(self, container, stream, wanted, slack)
        finished.append("second")
        return result

    monkeypatch.setattr(decode.Part, "sample", failing_first)
    with pytest.raises(NotAVideoError, match="broken earlier half"):
        decode_clip(path, num_frames=16, height=24, width=32)

    assert sorted(finished) == ["first", "second"]


def _track_later_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``open``/``close`` of every demuxer a later half opens (the probe's is not counted).

    Each is tagged with whether the halves thread did it: a demuxer dropped and
    closed by the garbage collector is closed elsewhere.
    """
    events: list[str] = []
    real = open_video

    def event(name: str) -> str:
        on_halves = threading.current_thread().name.startswith("half-decode")
        return name if on_halves else f"{name} elsewhere"

    @contextlib.contextmanager
    def tracked(source: Any, **kwargs: Any) -> Iterator[Any]:
        with real(source, **kwargs) as container:
            events.append(event("open"))
            try:
                yield container
            finally:
                events.append(event("close"))

    monkeypatch.setattr(decode, "open_video", tracked)
    return events


def _halves_thread_idle() -> None:
    decode._halves_pool().submit(lambda: None).result()  # one thread: all before it ran


def test_a_big_file_opens_the_later_halfs_demuxer_while_it_is_probed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _long_web_video(tmp_path)
    monkeypatch.setattr(decode, "EARLY_OPEN_MIN_BYTES", 0)
    events = _track_later_opens(monkeypatch)
    handed: list[bool] = []
    sample_opened = decode.Part.sample_opened

    def recorded(self: Any, opening: Any, *args: Any) -> Any:
        handed.append(opening is not None)
        return sample_opened(self, opening, *args)

    monkeypatch.setattr(decode.Part, "sample_opened", recorded)

    halves, whole, _ = _halves_and_whole(path, monkeypatch, tolerance=0.5, skip_nonref=True)
    _halves_thread_idle()

    assert handed == [True]  # the later half took over the demuxer opened early
    np.testing.assert_array_equal(halves.times_s, whole.times_s)
    np.testing.assert_array_equal(halves.frames, whole.frames)
    # The whole pass (no split) opened one early too, and closed it unused.
    assert events == ["open", "close", "open", "close"]


@pytest.mark.parametrize("video", [True, False])
def test_an_early_demuxer_nobody_needs_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, video: bool
) -> None:
    path = web_video(tmp_path, 250, gop=12)  # 10 s: not split
    if not video:
        path.write_bytes(b"\x00not a video" * 4096)
    monkeypatch.setattr(decode, "EARLY_OPEN_MIN_BYTES", 0)
    events = _track_later_opens(monkeypatch)

    if video:
        decode_clip(path, num_frames=16, height=24, width=32)
    else:
        with pytest.raises(NotAVideoError):
            decode_clip(path, num_frames=16, height=24, width=32)
    _halves_thread_idle()

    assert events == (["open", "close"] if video else [])


def test_a_small_file_opens_no_demuxer_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = web_video(tmp_path, 250, gop=12)
    events = _track_later_opens(monkeypatch)

    decode_clip(path, num_frames=16, height=24, width=32)
    _halves_thread_idle()

    assert path.stat().st_size < decode.EARLY_OPEN_MIN_BYTES
    assert events == []
