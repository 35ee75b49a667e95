"""Decode & sample: the one path from a video file to a ``uint8 [T, H, W, 3]`` clip.

Training, evaluation and serving all call :func:`decode_clip` (or
:func:`decode_at` for many windows at once), so there is no skew between
what the model learnt from and what it is served.

Cost follows the number of sampled frames, not the video's length: the
decoder runs forward while the next sample is near, and seeks (to the
keyframe before it) when the gap is larger than what a seek has been seen
to cost in this file. Decoding stops after the last sample. Each chosen
frame is scaled and converted by FFmpeg's swscale (bilinear) straight to
the model's ``H x W`` RGB, so full-size RGB frames are never built. A
video of a minute or more is sampled in two halves at once (the later half
on a thread with a demuxer and decoder of its own), in about half the time
when a core is free; for a file of 32 MiB or more that second demuxer opens
while the first one probes. Its frames are those of one pass: always with exact
frames, and with a tolerance whenever one pass would also seek between the
halves (samples further apart than the file's keyframe interval).

By default every frame is the one on screen at its time, fully decoded.
Three options trade exactness for speed (:class:`DecodeMode`):

- ``tolerance``: a frame within ``tolerance`` segments of its time may
  stand for it; the sampler then takes the cheapest such frame: a keyframe
  inside the window, nearest its time (found by reading packets ahead,
  nothing decoded on the way) when decoding it costs less than decoding
  forward to the window, else the first frame the decoder reaches inside it.
- ``skip_nonref``: frames nothing references are not decoded while they lie
  more than two frame intervals before the window (the same frames are
  chosen as without it, at constant frame rate).
- ``skip_loop_filter``: no deblocking filter (H.264/HEVC): faster decoding,
  slightly blockier pictures (bench/README.md has the figures).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import av.video
import numpy as np
import numpy.typing as npt

from service.media.cursor import PacketCursor
from service.media.picker import FramePicker
from service.media.probe import (
    Limits,
    Source,
    VideoInfo,
    check_limits,
    open_probed,
    open_video,
    video_stream,
)
from service.media.timestamps import FloatArray, segment_centres

# A video this long is sampled in two halves at once, each with a decoder of its own: its
# samples lie a seek or more apart, so each half costs about what it would in one pass.
SPLIT_MIN_DURATION_S = 60.0
# A file this big is likely that long: the later half's demuxer opens while the first probes.
EARLY_OPEN_MIN_BYTES = 32 * 1024 * 1024
TimesFor = Callable[[VideoInfo], FloatArray]
UnitFor = Callable[[VideoInfo], "float | FloatArray"]


@dataclass(frozen=True, slots=True)
class DecodeMode:
    """How near its time each frame must be, and what the decoder may leave out."""

    tolerance: float = 0.0  # fraction of a segment (0 = the frame on screen)
    skip_nonref: bool = False
    skip_loop_filter: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= 0.5:
            raise ValueError("tolerance must lie in [0, 0.5] (0.5 = anywhere in the segment)")


EXACT = DecodeMode()


@dataclass(frozen=True, slots=True)
class Clip:
    """Sampled frames of one video and where they came from."""

    frames: npt.NDArray[np.uint8]  # (N, H, W, 3) RGB
    times_s: FloatArray  # (N,) presentation time of each chosen frame
    info: VideoInfo
    decoded_frames: int  # how many frames the decoder produced to get them


def decode_clip(
    source: Source,
    *,
    num_frames: int,
    height: int,
    width: int,
    limits: Limits | None = None,
    tolerance: float = 0.0,
    skip_nonref: bool = False,
    skip_loop_filter: bool = False,
) -> Clip:
    """``num_frames`` frames at the centres of equal segments, as ``(T, H, W, 3) uint8``.

    ``tolerance`` is the fraction of a segment a frame may lie from its centre
    and still be taken (0 = the frame on screen at the centre); see the module
    docstring for ``skip_nonref`` and ``skip_loop_filter``.
    """
    return decode_at(
        source,
        lambda info: segment_centres(info.duration_s, num_frames, start_s=info.start_s),
        height=height,
        width=width,
        limits=limits,
        tolerance=tolerance,
        tolerance_unit=lambda info: info.duration_s / num_frames,
        skip_nonref=skip_nonref,
        skip_loop_filter=skip_loop_filter,
    )


def decode_at(
    source: Source,
    times: FloatArray | TimesFor,
    *,
    height: int,
    width: int,
    limits: Limits | None = None,
    tolerance: float = 0.0,
    tolerance_unit: UnitFor | None = None,
    skip_nonref: bool = False,
    skip_loop_filter: bool = False,
) -> Clip:
    """Frames on screen at ``times`` (seconds, or a function of the probed info).

    Returns one frame per requested time, ``(len(times), H, W, 3) uint8``, in
    the order of ``times``. A frame lying within ``tolerance * unit`` seconds
    of a time may stand for it; ``unit`` is one frame interval by default, or
    what ``tolerance_unit`` gives: seconds, for all times or ``(len(times),)``.
    """
    if height < 1 or width < 1:
        raise ValueError("height and width must be >= 1")
    limits = limits or Limits()
    path = source if isinstance(source, str | Path) else None
    early = _open_early(path, limits) if path is not None else None
    try:
        with open_probed(source, max_pixels=limits.max_pixels) as (container, stream, info):
            check_limits(info, limits)
            wanted = np.asarray(times(info) if callable(times) else times, dtype=np.float64)
            unit = tolerance_unit(info) if tolerance_unit else 1.0 / info.fps
            slack = np.broadcast_to(np.maximum(tolerance * np.asarray(unit), 0.0), wanted.shape)
            part = _Part(info, limits, height, width, skip_nonref, skip_loop_filter)
            if path is None or not _splits(stream, info, wanted):
                frames, chosen, decoded = part.sample(container, stream, wanted, slack)
            else:
                opening, early = early, None  # the later half takes it over
                frames, chosen, decoded = _sample_halves(
                    path, container, stream, part=part, wanted=wanted, slack=slack, opening=opening
                )
    finally:
        if early is not None:
            _discard(early)
    return Clip(frames=frames, times_s=chosen, info=info, decoded_frames=decoded)


@dataclass(frozen=True, slots=True)
class _Part:
    """How to sample some of a video's times with a decoder of one's own."""

    info: VideoInfo
    limits: Limits
    height: int
    width: int
    skip_nonref: bool
    skip_loop_filter: bool

    def sample(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        wanted: FloatArray,
        slack: FloatArray,
    ) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
        """``(len(wanted), H, W, 3)`` frames, their times, and the frames decoded."""
        cursor = PacketCursor(
            container,
            stream,
            self.limits,
            skip_nonref=self.skip_nonref,
            skip_loop_filter=self.skip_loop_filter,
        )
        picker = FramePicker(cursor, self.info, height=self.height, width=self.width)
        frames, chosen = picker.run(wanted, slack)
        return frames, chosen, cursor.decoded

    def sample_opened(
        self,
        opening: concurrent.futures.Future[_Opened] | None,
        path: str | Path,
        wanted: FloatArray,
        slack: FloatArray,
    ) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
        """:meth:`sample` on a container of its own: ``opening``'s, else opened now.

        The probe's info is reused. Runs on the halves thread, where ``opening``
        was submitted earlier and so has finished.
        """
        opened = opening.result() if opening is not None else _Opened.open(path, self.limits)
        with opened.stack:
            return self.sample(opened.container, opened.stream, wanted, slack)


@dataclass(frozen=True, slots=True)
class _Opened:
    """A demuxer and decoder of the later half's own; ``stack`` closes them."""

    stack: contextlib.ExitStack
    container: av.container.InputContainer
    stream: av.video.VideoStream

    @classmethod
    def open(cls, path: str | Path, limits: Limits) -> _Opened:
        with contextlib.ExitStack() as stack:
            container = stack.enter_context(open_video(path, max_pixels=limits.max_pixels))
            stream = video_stream(container, max_pixels=limits.max_pixels)
            return cls(stack.pop_all(), container, stream)


def _open_early(path: str | Path, limits: Limits) -> concurrent.futures.Future[_Opened] | None:
    """For a big file, a second demuxer opening on the halves thread while this one probes."""
    try:
        big = Path(path).stat().st_size >= EARLY_OPEN_MIN_BYTES
    except OSError:
        return None  # the probe reports it
    return _halves_pool().submit(_Opened.open, path, limits) if big else None


def _discard(opening: concurrent.futures.Future[_Opened]) -> None:
    """Close an early demuxer nobody needs, on its thread; it may not have opened yet."""
    if not opening.cancel():
        _halves_pool().submit(_close, opening)


def _close(opening: concurrent.futures.Future[_Opened]) -> None:
    with contextlib.suppress(Exception):  # an open that failed has nothing to close
        opening.result().stack.close()


def _splits(stream: av.video.VideoStream, info: VideoInfo, wanted: FloatArray) -> bool:
    """Whether to sample a file in two halves at once: a long video that can seek."""
    return (
        stream.time_base is not None
        and info.duration_s >= SPLIT_MIN_DURATION_S
        and len(wanted) >= 2
    )


def _sample_halves(
    source: str | Path,
    container: av.container.InputContainer,
    stream: av.video.VideoStream,
    *,
    part: _Part,
    wanted: FloatArray,
    slack: FloatArray,
    opening: concurrent.futures.Future[_Opened] | None,
) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
    """The earlier half of the times here, the later half on a thread with its own decoder.

    Decoding and demuxing release the GIL, so the halves run in parallel. The
    later half always finishes before this returns, even when the earlier fails.
    """
    order = np.argsort(wanted, kind="stable")
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    later = _halves_pool().submit(
        part.sample_opened, opening, source, wanted[second], slack[second]
    )
    try:
        frames_1, chosen_1, decoded_1 = part.sample(container, stream, wanted[first], slack[first])
    except BaseException:
        concurrent.futures.wait([later])
        raise
    frames_2, chosen_2, decoded_2 = later.result()
    frames = np.empty((len(wanted), *frames_1.shape[1:]), dtype=np.uint8)
    chosen = np.empty(len(wanted), dtype=np.float64)
    frames[first], frames[second] = frames_1, frames_2
    chosen[first], chosen[second] = chosen_1, chosen_2
    return frames, chosen, decoded_1 + decoded_2


@functools.cache
def _halves_pool() -> concurrent.futures.ThreadPoolExecutor:
    # One thread per process, made on first use: only processes that decode long videos.
    return concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="half-decode")
