"""Opening and probing a video with PyAV, with PyAV's errors wrapped at the boundary.

A source is a path or a seekable binary file object. ``probe`` reads what
the container says (and, where it says nothing about length, what its
packets say) and ``check_limits`` rejects a video before a frame is decoded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.container
import av.logging
import av.stream
import av.video

from service.core.errors import (
    FrameTooLargeError,
    LimitExceededError,
    NotAVideoError,
    NoVideoStreamError,
)

Source = str | Path | BinaryIO

# FFmpeg's own fuzzers cap frames at 4096x4096 (~16.8 Mpx); larger frames
# are where decoders spend unbounded memory and time.
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_FALLBACK_FPS = 25.0
# libavutil's message when a frame size is over the max_pixels option.
_REFUSED_SIZE = re.compile(r"Picture size (\d+)x(\d+) exceeds")


@dataclass(frozen=True, slots=True)
class Limits:
    """What a video may be before we agree to decode it."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_duration_s: float = 3 * 3600.0
    max_frames: int = 500_000

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.max_duration_s <= 0 or self.max_frames < 1:
            raise ValueError("limits must be positive")


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a client and the sampler need to know about a video stream."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    start_s: float
    duration_s: float
    num_frames: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def open_video(
    source: Source, *, max_pixels: int | None = None
) -> Iterator[av.container.InputContainer]:
    """Open ``source`` for reading; any FFmpeg failure becomes :class:`NotAVideoError`.

    ``max_pixels`` caps the frames FFmpeg may decode while probing the streams:
    a header claiming a larger frame is refused before anything is allocated.
    """
    if not isinstance(source, str | Path):
        source.seek(0)
    try:
        # mode="r" matters for file objects: without it PyAV may try to guess
        # an output format for small in-memory uploads.
        container = av.open(
            source if not isinstance(source, Path) else str(source),
            mode="r",
            options=_pixel_cap(max_pixels),
        )
    except (av.FFmpegError, ValueError, EOFError, UnicodeDecodeError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise NotAVideoError(f"cannot read the file as a media container: {_reason(err)}") from err
    try:
        yield container
    finally:
        container.close()


def video_stream(
    container: av.container.InputContainer, *, max_pixels: int | None = None
) -> av.video.VideoStream:
    """The first video stream that has a decoder, set up for single-threaded decoding.

    ``max_pixels`` makes the decoder refuse larger frames (a stream may switch
    to a huge size after a small first frame) instead of allocating them.
    """
    streams = [s for s in container.streams.video if s.codec_context is not None]
    streams = [s for s in streams if not _is_attached_picture(s)] or streams
    if not streams:
        raise NoVideoStreamError("the file has no decodable video stream")
    stream = streams[0]
    # One thread per decode: the service and the trainer run one process per core.
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = 1
    stream.codec_context.options = _pixel_cap(max_pixels)
    return stream


def _pixel_cap(max_pixels: int | None) -> dict[str, str]:
    # FFmpeg's own option (libavcodec checks it before allocating a frame). It
    # refuses values over INT_MAX, and with them every decode: no frame is that big.
    return {} if max_pixels is None else {"max_pixels": str(min(max_pixels, 2**31 - 1))}


# Demuxers with no duration field and no index: FFmpeg guesses from the bit rate or
# from timestamps near the ends, and can be off by a third on a short clip. The
# packets are read instead (demuxing only; MPEG program streams are rare uploads).
GUESSED_DURATION_FORMATS = frozenset({"mpeg"})


@contextlib.contextmanager
def open_probed(
    source: Source, *, max_pixels: int | None = None
) -> Iterator[tuple[av.container.InputContainer, av.video.VideoStream, VideoInfo]]:
    """Open ``source`` and probe its video stream, positioned at the start for decoding.

    With ``max_pixels``, no frame larger than that is ever decoded (see :func:`open_video`).
    """
    with open_video(source, max_pixels=max_pixels) as container:
        stream = video_stream(container, max_pixels=max_pixels)
        sized = stream.codec_context.width > 0 and stream.codec_context.height > 0
        info = _probe(container, stream) if sized else None
        if info is not None:
            yield container, stream, info
            return
    if not sized:
        _check_refused_size(source, max_pixels)
        raise NotAVideoError("the video stream declares no frame size")
    # The container does not say how long the video is: scan its packets (no
    # decoding), then reopen, since not every demuxer can seek back to 0.
    with open_video(source, max_pixels=max_pixels) as container:
        stream = video_stream(container, max_pixels=max_pixels)
        try:
            start_s, duration_s = _scan_packet_times(container, stream, _fps(stream))
        except (av.FFmpegError, ValueError) as err:
            raise NotAVideoError("cannot read the video stream's packets") from err
    with open_video(source, max_pixels=max_pixels) as container:
        stream = video_stream(container, max_pixels=max_pixels)
        yield container, stream, _info(container, stream, start_s, duration_s)


def _check_refused_size(source: Source, max_pixels: int | None) -> None:
    """Raise :class:`FrameTooLargeError` if the probe knows no frame size because of the cap.

    FFmpeg refuses a size over ``max_pixels`` without decoding, and says which
    size only in its log: probe once more, capturing the log (a rare path).
    """
    if max_pixels is None:
        return
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    # PyAV drops a message equal to the last one: the same refusal twice in a row too.
    av.logging.set_skip_repeated(False)
    av.logging.set_level(av.logging.ERROR)
    try:
        with (
            av.logging.Capture() as logs,
            contextlib.suppress(NotAVideoError),
            open_video(source, max_pixels=max_pixels),
        ):
            pass
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
    for _level, _name, message in logs:
        if match := _REFUSED_SIZE.search(message):
            check_frame_size(int(match[1]), int(match[2]), Limits(max_pixels=max_pixels))


def _probe(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> VideoInfo | None:
    """What the container declares, or None when it declares no duration (or only guesses it)."""
    if container.format.name in GUESSED_DURATION_FORMATS:
        return None
    tb = stream.time_base
    start_s = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    duration_s = _declared_duration(container, stream)
    if duration_s is None:
        return None
    return _info(container, stream, start_s, duration_s)


def _info(
    container: av.container.InputContainer,
    stream: av.video.VideoStream,
    start_s: float,
    duration_s: float,
) -> VideoInfo:
    ctx = stream.codec_context
    fps = _fps(stream)
    frames = stream.frames or round(duration_s * fps)
    return VideoInfo(
        container=container.format.name,
        codec=ctx.name,
        width=int(ctx.width),
        height=int(ctx.height),
        fps=round(fps, 6),
        start_s=round(start_s, 6),
        duration_s=round(duration_s, 6),
        num_frames=int(frames),
    )


def check_limits(info: VideoInfo, limits: Limits) -> None:
    """Reject a probed video that is outside ``limits`` or has no usable picture."""
    if info.width <= 0 or info.height <= 0:
        raise NotAVideoError("the video stream declares no frame size")
    check_frame_size(info.width, info.height, limits)
    if info.duration_s > limits.max_duration_s:
        raise LimitExceededError(
            f"video lasts {info.duration_s:.0f} s; the limit is {limits.max_duration_s:.0f} s"
        )
    if info.num_frames > limits.max_frames:
        raise LimitExceededError(
            f"video has about {info.num_frames} frames; the limit is {limits.max_frames}"
        )


def check_frame_size(width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise FrameTooLargeError(
            f"frame is {width}x{height} ({width * height} pixels); "
            f"the limit is {limits.max_pixels} pixels"
        )


def _fps(stream: av.video.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) <= 1000:
            return float(rate)
    return DEFAULT_FALLBACK_FPS


def _declared_duration(
    container: av.container.InputContainer, stream: av.video.VideoStream
) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration and container.duration > 0:
        start = container.start_time or 0
        end = container.duration + start
        stream_start = (
            float(stream.start_time * stream.time_base)
            if stream.start_time is not None and stream.time_base
            else start / av.time_base
        )
        return max(end / av.time_base - stream_start, 0.0)
    return None


def _scan_packet_times(
    container: av.container.InputContainer, stream: av.video.VideoStream, fps: float
) -> tuple[float, float]:
    """Start and duration from packet timestamps: reads the file, decodes nothing."""
    first: float | None = None
    last: float | None = None
    count = 0
    for packet in container.demux(stream):
        if packet.pts is None or packet.time_base is None:
            if packet.size:
                count += 1
            continue
        t = float(packet.pts * packet.time_base)
        first = t if first is None else min(first, t)
        last = t if last is None else max(last, t)
        count += 1
    if first is None or last is None:
        return 0.0, count / fps
    return first, last - first + 1.0 / fps


def _is_attached_picture(stream: av.stream.Stream) -> bool:
    disposition = getattr(stream, "disposition", None)
    return bool(disposition is not None and "attached_pic" in str(disposition).lower())


def _reason(err: BaseException) -> str:
    # strerror, not str(err): the latter names the (temporary) file path.
    text = getattr(err, "strerror", None) or type(err).__name__
    return str(text)[:200]
