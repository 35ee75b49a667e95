"""Encode: write rendered frames as a real video file with PyAV.

Encoders run single-threaded with bit-exact flags so a seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]


class EncodeError(RuntimeError):
    """FFmpeg refused to write a video."""


@dataclass(frozen=True, slots=True)
class Codec:
    """An encoder in a container, named ``<codec>.<container suffix>``."""

    key: str
    encoder: str  # FFmpeg encoder name
    muxer: str  # FFmpeg muxer name
    pix_fmt: str
    rates: tuple[int, ...] | None = None  # frame rates the format accepts; None = 12..30

    @property
    def suffix(self) -> str:
        return "." + self.key.split(".")[1]


# MPEG-2 can only signal a few rates (base rate x n/d).
_MPEG2_RATES = (12, 15, 16, 18, 20, 24, 25, 30)

CODECS: dict[str, Codec] = {
    c.key: c
    for c in (
        Codec("h264.mp4", "libx264", "mp4", "yuv420p"),
        Codec("h264.mkv", "libx264", "matroska", "yuv420p"),
        Codec("vp9.webm", "libvpx-vp9", "webm", "yuv420p"),
        Codec("vp8.webm", "libvpx", "webm", "yuv420p"),
        Codec("mpeg4.avi", "mpeg4", "avi", "yuv420p"),
        Codec("mjpeg.avi", "mjpeg", "avi", "yuvj420p"),
        Codec("mpeg2.ts", "mpeg2video", "mpegts", "yuv420p", rates=_MPEG2_RATES),
    )
}


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one video is encoded: codec key, its quality knob and the encoder options."""

    codec: str
    quality: int  # CRF for x264/VPx, fixed quantiser for the MPEG family and MJPEG
    options: tuple[tuple[str, str], ...]

    @property
    def spec(self) -> Codec:
        return CODECS[self.codec]


def sample_encoding(codec: str, rng: np.random.Generator) -> Encoding:
    """Random quality settings for ``codec`` (a key of ``CODECS``), within sane bounds."""
    encoder = CODECS[codec].encoder
    options: dict[str, str]
    if encoder == "libx264":
        quality = int(rng.integers(18, 31))
        preset = ("ultrafast", "superfast")[int(rng.integers(2))]
        options = {"crf": str(quality), "preset": preset}
    elif encoder == "libvpx-vp9":
        quality = int(rng.integers(20, 43))
        options = {"crf": str(quality), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        options |= {"lag-in-frames": "0", "row-mt": "0"}
    elif encoder == "libvpx":
        quality = int(rng.integers(6, 31))
        options = {"crf": str(quality), "b": "3M", "deadline": "realtime", "cpu-used": "8"}
        options |= {"lag-in-frames": "0"}
    else:  # mpeg4, mpeg2video, mjpeg: a fixed quantiser
        quality = int(rng.integers(2, 10))
        options = {"qmin": str(quality), "qmax": str(quality), "flags": "+bitexact"}
    return Encoding(codec=codec, quality=quality, options=tuple(sorted(options.items())))


def write_video(
    path: Path,
    frames: Iterable[Pixels],
    *,
    encoding: Encoding,
    width: int,
    height: int,
    fps: int,
) -> int:
    """Encode ``(H, W, 3) uint8`` RGB frames to ``path``; returns the frame count.

    Raises ``EncodeError`` (from the FFmpeg error) when the encoder or muxer fails.
    """
    codec = encoding.spec
    count = 0
    try:
        with av.open(
            str(path), mode="w", format=codec.muxer, container_options={"fflags": "+bitexact"}
        ) as container:
            stream = container.add_stream(codec.encoder, rate=fps, options=dict(encoding.options))
            if not isinstance(stream, av.VideoStream):
                raise EncodeError(f"{codec.encoder} is not a video encoder")
            stream.width = width
            stream.height = height
            stream.pix_fmt = codec.pix_fmt
            stream.codec_context.thread_count = 1  # determinism
            for pixels in frames:
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                container.mux(stream.encode(frame))
                count += 1
            container.mux(stream.encode(None))
    except av.FFmpegError as err:
        raise EncodeError(f"cannot encode {path.name} as {codec.key}: {err}") from err
    return count
