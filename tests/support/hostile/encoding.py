"""Tiny videos encoded in memory with PyAV, for the hostile cases and the fuzzers."""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction

import av
import av.video

from tests.support.media import Frames, moving_square_frames, noise_frames


def encode(
    frames: Frames,
    *,
    codec: str = "libx264",
    container: str = "mp4",
    pix_fmt: str = "yuv420p",
    fps: float = 8,
    times_s: Sequence[float] | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    input_format: str = "rgb24",
) -> bytes:
    """``(N, H, W, C) uint8`` frames encoded in memory; ``times_s`` gives each frame's pts."""
    n, height, width, _ = frames.shape
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container, options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = dict(options or {})
        stream.codec_context.thread_count = 1
        time_base = Fraction(1, 1000) if times_s is not None else 1 / rate
        stream.codec_context.time_base = time_base
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format=input_format)
            t = times_s[i] if times_s is not None else i / rate
            frame.pts = round(Fraction(t).limit_denominator(10**6) / time_base)
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buffer.getvalue()


X264 = {"preset": "ultrafast"}
VPX = {"deadline": "realtime", "cpu-used": "8"}


def square(n: int = 16, height: int = 48, width: int = 64) -> Frames:
    return moving_square_frames(n, height, width, size=min(height, width) // 3 or 1)


def noise(n: int) -> Frames:
    return noise_frames(n, 48, 64, seed=n)
