"""Real media made in code with PyAV, for tests and benchmarks.

Nothing binary is checked in: every test writes the files it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.audio.stream
import av.video
import numpy as np
import numpy.typing as npt

Frames = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Format:
    """A codec in a container, as the tests name them (e.g. ``h264.mp4``)."""

    codec: str
    suffix: str
    pix_fmt: str = "yuv420p"
    container: str | None = None  # FFmpeg muxer name when the suffix does not say it
    options: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.codec}{self.suffix}"


H264_MP4 = Format("libx264", ".mp4", options=(("preset", "ultrafast"),))
H264_MKV = Format("libx264", ".mkv", options=(("preset", "ultrafast"),))
VP9_WEBM = Format("libvpx-vp9", ".webm", options=(("deadline", "realtime"), ("cpu-used", "8")))
MPEG4_AVI = Format("mpeg4", ".avi")
MJPEG_AVI = Format("mjpeg", ".avi", pix_fmt="yuvj420p")
MPEG2_TS = Format("mpeg2video", ".ts", container="mpegts")
LOSSLESS_MP4 = Format("libx264rgb", ".mp4", pix_fmt="rgb24", options=(("crf", "0"),))
FFV1_MKV = Format("ffv1", ".mkv", pix_fmt="bgr0")

COMMON_FORMATS = (H264_MP4, VP9_WEBM, MPEG4_AVI, MJPEG_AVI, H264_MKV, MPEG2_TS)


def write_video(
    path: Path,
    frames: Frames,
    *,
    fmt: Format = H264_MP4,
    fps: float = 25,
    gop: int | None = None,
    extra_options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode ``(N, H, W, 3) uint8`` RGB frames to ``path``; returns ``path``.

    ``extra_options`` go to the encoder, ``container_options`` to the muxer
    (e.g. ``{"movflags": "frag_keyframe+empty_moov"}`` for fragmented MP4).
    """
    n, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(
        str(path), "w", format=fmt.container, options=container_options or {}
    ) as container:
        stream = container.add_stream(fmt.codec, rate=rate)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, fmt.pix_fmt
        stream.options = {**dict(fmt.options), **(extra_options or {})}
        stream.codec_context.thread_count = 1
        if gop is not None:
            stream.codec_context.gop_size = gop
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def noise_frames(n: int, height: int = 48, width: int = 64, *, seed: int = 0) -> Frames:
    """Independent random frames, ``(n, H, W, 3) uint8``: every frame is unique."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)


def moving_square_frames(
    n: int, height: int = 120, width: int = 160, *, direction: int = 1, size: int = 24
) -> Frames:
    """A white square sliding horizontally over grey, ``(n, H, W, 3) uint8``.

    ``direction`` 1 moves it right, -1 left.
    """
    frames = np.full((n, height, width, 3), 64, dtype=np.uint8)
    span = width - size
    for i in range(n):
        x = round(span * i / max(n - 1, 1))
        if direction < 0:
            x = span - x
        y = (height - size) // 2
        frames[i, y : y + size, x : x + size] = 255
    return frames


def sliding_square_folder(
    root: Path, labels: tuple[str, str] = ("slide_left", "slide_right"), *, per_label: int = 6
) -> Path:
    """``root/<label>/<i>.mp4``: a labelled folder of real videos, the square sliding left
    for the first label and right for the second, each video a little longer."""
    for label, direction in zip(labels, (-1, 1), strict=True):
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            frames = moving_square_frames(10 + i, 48, 64, direction=direction, size=12)
            write_video(root / label / f"{i}.mp4", frames)
    return root


def expected_indices(num_frames: int, count: int) -> npt.NDArray[np.int64]:
    """Index of the frame on screen at each segment centre of a constant-rate video."""
    centres = (np.arange(count) + 0.5) * num_frames / count
    return np.floor(centres + 1e-9).astype(np.int64)


def write_audio(path: Path, codec: str, *, seconds: float = 1.0) -> Path:
    """An audio-only file (a sine tone) in ``codec``; the container follows the suffix."""
    rate = 48000
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        assert isinstance(stream, av.audio.stream.AudioStream)
        stream.layout = "mono"
        formats = [f.name for f in stream.codec_context.codec.audio_formats or ()]
        fmt = next(f for f in ("fltp", "flt") if f in formats)
        size = stream.codec_context.frame_size or 960
        t = np.arange(int(seconds * rate)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i, start in enumerate(range(0, len(tone) - size, size)):
            frame = av.AudioFrame.from_ndarray(
                tone[None, start : start + size], format=fmt, layout="mono"
            )
            frame.sample_rate = rate
            frame.pts = i * size
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_big_frame(path: Path, width: int, height: int, fmt: Format = MJPEG_AVI) -> Path:
    """One real frame of ``width x height`` (mostly flat, so the file stays small)."""
    frame = np.full((1, height, width, 3), 90, dtype=np.uint8)
    frame[0, : height // 8, : width // 8] = 200
    return write_video(path, frame, fmt=fmt, fps=1)
