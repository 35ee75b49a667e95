"""Encode: frames -> a real file with PyAV, in codecs and containers of its own.

Encoders run single-threaded with bit-exact flags, so one scene always gives
the same bytes. Each :class:`Codec` knows what its bitstream allows (even
sizes, the standard frame rates of MPEG-1, a pixel budget for lossless FFV1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.video
import numpy as np
import numpy.typing as npt

MPEG1_RATES = frozenset(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")
)


class EncodeError(RuntimeError):
    """FFmpeg refused to write a video."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """An encoder in a container: ``codec`` is what a decoder reports, ``muxer`` FFmpeg's name."""

    encoder: str
    codec: str
    muxer: str
    suffix: str
    pix_fmt: str
    odd_pix_fmt: str | None  # the pixel format for odd sizes; None: sizes are made even
    weight: float
    rates: frozenset[Fraction] | None = None
    max_pixels: int | None = None
    bitexact: bool = True  # an FFmpeg-native encoder that takes ``flags=+bitexact``
    fixed: tuple[tuple[str, str], ...] = ()  # always set: one thread, quiet

    def fit_size(self, width: int, height: int) -> tuple[int, int]:
        """The nearest size at most ``width x height`` that this codec can write."""
        if self.max_pixels is not None and width * height > self.max_pixels:
            shrink = (self.max_pixels / (width * height)) ** 0.5
            width, height = int(width * shrink), int(height * shrink)
        if self.odd_pix_fmt is None:
            width, height = width - width % 2, height - height % 2
        return width, height

    def allows_rate(self, fps: Fraction) -> bool:
        """Whether the bitstream can signal frame rate ``fps``."""
        return self.rates is None or fps in self.rates


CODECS: dict[str, Codec] = {
    "vp8.webm": Codec(
        encoder="libvpx", codec="vp8", muxer="webm", suffix=".webm",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=2.0, bitexact=False,
    ),
    "h264.mov": Codec(
        encoder="libx264", codec="h264", muxer="mov", suffix=".mov",
        pix_fmt="yuv420p", odd_pix_fmt="yuv444p", weight=2.0, bitexact=False,
        # x264's lookahead (and so mb-tree) reads memory it never wrote on small
        # frames: without it, the same frames give the same bytes.
        fixed=(("x264-params", "rc-lookahead=0"),),
    ),
    "hevc.mkv": Codec(
        encoder="libx265", codec="hevc", muxer="matroska", suffix=".mkv",
        pix_fmt="yuv420p", odd_pix_fmt=None, weight=1.5, bitexact=False,
        fixed=(("x265-params", "pools=none:frame-threads=1:log-level=error"),),
    ),
    "av1.mkv": Codec(
        encoder="libsvtav1", codec="av1", muxer="matroska", suffix=".mkv",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=1.0, bitexact=False,
        fixed=(("svtav1-params", "lp=1"),),
    ),
    "ffv1.mkv": Codec(
        encoder="ffv1", codec="ffv1", muxer="matroska", suffix=".mkv",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=0.5, max_pixels=240 * 180,
    ),
    "mpeg4.mp4": Codec(
        encoder="mpeg4", codec="mpeg4", muxer="mp4", suffix=".mp4",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=1.5,
    ),
    "mjpeg.mov": Codec(
        encoder="mjpeg", codec="mjpeg", muxer="mov", suffix=".mov",
        pix_fmt="yuvj420p", odd_pix_fmt="yuvj444p", weight=1.0,
    ),
    "flv1.flv": Codec(
        encoder="flv", codec="flv1", muxer="flv", suffix=".flv",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=1.0,
    ),
    "wmv2.wmv": Codec(
        encoder="wmv2", codec="wmv2", muxer="asf", suffix=".wmv",
        pix_fmt="yuv420p", odd_pix_fmt=None, weight=1.0,
    ),
    "msmpeg4v2.avi": Codec(
        encoder="msmpeg4v2", codec="msmpeg4v2", muxer="avi", suffix=".avi",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=0.5,
    ),
    "mpeg1.mpg": Codec(
        encoder="mpeg1video", codec="mpeg1video", muxer="mpeg", suffix=".mpg",
        pix_fmt="yuv420p", odd_pix_fmt="yuv420p", weight=1.0, rates=MPEG1_RATES,
    ),
}  # fmt: skip


def pick_codec(rng: np.random.Generator) -> str:
    """A key of ``CODECS``, drawn by weight."""
    keys = sorted(CODECS)
    weights = np.array([CODECS[k].weight for k in keys])
    return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]


def sample_options(
    key: str, rng: np.random.Generator, *, width: int, height: int, fps: Fraction
) -> tuple[tuple[str, str], ...]:
    """Random quality settings for ``CODECS[key]``: presets, rate factors, bitrates, GOPs."""
    codec = CODECS[key]
    gop = str(int(rng.choice([12, 30, 60, 120, 250])))
    bitrate = int(float(rng.uniform(0.08, 0.5)) * width * height * float(fps))
    opts: dict[str, str]
    match codec.encoder:
        case "libx264":
            preset = str(rng.choice(["ultrafast", "superfast", "veryfast", "faster"]))
            opts = {"preset": preset, "crf": str(int(rng.integers(16, 31))), "g": gop}
        case "libx265":
            preset = str(rng.choice(["ultrafast", "superfast"]))
            opts = {"preset": preset, "crf": str(int(rng.integers(20, 33))), "g": gop}
        case "libvpx":
            deadline = str(rng.choice(["realtime", "good"]))
            speed = str(int(rng.integers(8, 17) if deadline == "realtime" else rng.integers(4, 6)))
            crf = str(int(rng.integers(6, 40)))
            opts = {"deadline": deadline, "cpu-used": speed, "crf": crf, "g": gop}
            opts["b"] = str(bitrate)
        case "libsvtav1":
            opts = {"preset": "11", "crf": str(int(rng.integers(28, 50))), "g": gop}
        case "ffv1":
            opts = {"level": str(rng.choice(["1", "3"])), "coder": str(rng.choice(["0", "1"]))}
        case _:
            opts = {"b": str(bitrate), "g": gop}
            if codec.encoder == "mpeg4":
                opts["bf"] = str(int(rng.integers(0, 3)))
    return tuple(sorted(opts.items()))


def write_video(
    path: Path,
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    key: str,
    width: int,
    height: int,
    fps: Fraction,
    options: tuple[tuple[str, str], ...],
) -> int:
    """Encode ``(H, W, 3) uint8`` RGB ``frames`` to ``path`` with ``CODECS[key]``.

    Returns the frame count. Raises ``EncodeError`` (from FFmpeg's error) when the
    encoder or the muxer fails; no partial file is left at ``path``.
    """
    codec = CODECS[key]
    odd = width % 2 == 1 or height % 2 == 1
    pix_fmt = codec.odd_pix_fmt if odd and codec.odd_pix_fmt else codec.pix_fmt
    opts: dict[str, object] = {**dict(options), **dict(codec.fixed)}
    if codec.bitexact:
        opts["flags"] = "+bitexact"
    if codec.encoder == "libsvtav1":
        os.environ.setdefault("SVT_LOG", "1")  # the library's own banner: errors only
    tmp = path.with_name(f".{path.name}.part")  # hidden: a data loader skips it
    count = 0
    try:
        with av.open(
            str(tmp), "w", format=codec.muxer, container_options={"fflags": "+bitexact"}
        ) as container:
            stream = container.add_stream(codec.encoder, rate=fps)
            assert isinstance(stream, av.video.VideoStream)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            stream.codec_context.thread_count = 1
            stream.options = opts
            for rgb in frames:
                # Convert here, on this worker's one thread (swscale would pick its own
                # thread count), so the encoder gets frames in its own format.
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format=pix_fmt, threads=1
                )
                frame.pts = count
                frame.time_base = 1 / fps
                container.mux(stream.encode(frame))
                count += 1
            container.mux(stream.encode(None))
    except (av.FFmpegError, ValueError) as err:
        tmp.unlink(missing_ok=True)
        raise EncodeError(f"{key} {width}x{height}@{fps}: {err}") from err
    tmp.replace(path)
    return count
