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
when a core is free. Its frames are those of one pass: always with exact
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
- ``skip_loop_filter``: no deblocking filter (H.264/HEVC): 10-20% faster,
  slightly blockier pictures.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import av.video
import av.video.reformatter
import numpy as np
import numpy.typing as npt

from service.decoder import Decoder
from service.errors import NotAVideoError
from service.sampling import FloatArray, segment_centres
from service.video import (
    Limits,
    Source,
    VideoInfo,
    check_limits,
    open_probed,
    open_video,
    video_stream,
)

# Before any seek has been measured, a gap longer than this is worth a seek.
INITIAL_SEEK_GAP_S = 1.0
# skip_nonref leaves frames this many intervals before a window decoded, so the
# frame on screen at a time is never one that was skipped.
SKIP_GUARD_FRAMES = 2
# A video this long is sampled in two halves at once, each with a decoder of its own: its
# samples lie a seek or more apart, so each half costs about what it would in one pass.
SPLIT_MIN_DURATION_S = 60.0
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
    with open_probed(source, max_pixels=limits.max_pixels) as (container, stream, info):
        check_limits(info, limits)
        wanted = np.asarray(times(info) if callable(times) else times, dtype=np.float64)
        unit = tolerance_unit(info) if tolerance_unit else 1.0 / info.fps
        slack = np.broadcast_to(np.maximum(tolerance * np.asarray(unit), 0.0), wanted.shape)
        part = _Part(info, limits, height, width, skip_nonref, skip_loop_filter)
        path = source if isinstance(source, str | Path) else None
        if path is None or not _splits(stream, info, wanted):
            frames, chosen, decoded = part.sample(container, stream, wanted, slack)
        else:
            frames, chosen, decoded = _sample_halves(
                path, container, stream, part=part, wanted=wanted, slack=slack
            )
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
        decoder = Decoder(
            container,
            stream,
            self.limits,
            skip_nonref=self.skip_nonref,
            skip_loop_filter=self.skip_loop_filter,
        )
        sampler = _Sampler(decoder, self.info, height=self.height, width=self.width)
        frames, chosen = sampler.run(wanted, slack)
        return frames, chosen, decoder.decoded

    def sample_opened(
        self, path: str | Path, wanted: FloatArray, slack: FloatArray
    ) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
        """:meth:`sample` on a container of its own (the probe's info is reused)."""
        with open_video(path, max_pixels=self.limits.max_pixels) as container:
            stream = video_stream(container, max_pixels=self.limits.max_pixels)
            return self.sample(container, stream, wanted, slack)


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
) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
    """The earlier half of the times here, the later half on a thread with its own decoder.

    Decoding and demuxing release the GIL, so the halves run in parallel. The
    later half always finishes before this returns, even when the earlier fails.
    """
    order = np.argsort(wanted, kind="stable")
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    later = _halves_pool().submit(part.sample_opened, source, wanted[second], slack[second])
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


class _Sampler:
    """One forward pass over a stream that picks a frame for each time."""

    def __init__(self, decoder: Decoder, info: VideoInfo, *, height: int, width: int) -> None:
        self.decoder = decoder
        self.info = info
        self.height = height
        self.width = width
        self.seek_cost_s = INITIAL_SEEK_GAP_S
        self.can_seek = decoder.stream.time_base is not None
        self._converted: tuple[av.VideoFrame, npt.NDArray[np.uint8]] | None = None
        # One scaler for all frames: a frame's own would set up swscale every time.
        self._scaler = av.video.reformatter.VideoReformatter()
        self._prev: av.VideoFrame | None = None
        self._prev_time = -np.inf
        self._next: av.VideoFrame | None = None

    def run(
        self, wanted: FloatArray, slack: FloatArray
    ) -> tuple[npt.NDArray[np.uint8], FloatArray]:
        order = np.argsort(wanted, kind="stable")
        later = np.append(wanted[order][1:], np.inf)  # the next time, in time order
        # Where the next time's window opens: whether the cursor will seek before it.
        later_lo = np.append((wanted - slack)[order][1:], np.inf)
        frames = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)
        chosen = np.empty(len(wanted), dtype=np.float64)
        for idx, after, after_lo in zip(order, later, later_lo, strict=True):
            t, s = float(wanted[idx]), float(slack[idx])
            # A window never reaches past the next time, so the pass stays forward.
            hi = min(t + s, max(float(after), t))
            frame, when = self._frame_at(t, t - s, hi, next_lo=float(after_lo))
            frames[idx] = frame
            chosen[idx] = when
        return frames, chosen

    def _frame_at(
        self, t: float, lo: float, hi: float, *, next_lo: float = np.inf
    ) -> tuple[npt.NDArray[np.uint8], float]:
        """The frame for time ``t``: one in ``[lo, hi)``, else the one on screen at ``t``.

        ``next_lo`` is where the next time's window opens (``inf``: none follows).
        """
        if not self._settled(t, lo):
            self.decoder.skip_before(lo - SKIP_GUARD_FRAMES / self.info.fps)
            if self._should_seek(lo):
                # To the keyframe before the centre: the nearest on that side.
                self._seek(t, need=lo, window_end=hi, next_lo=next_lo)
            if lo < hi and not self._settled(t, lo):
                self._jump(lo, t, hi)
        while not self._settled(t, lo):
            nxt = self._peek()
            if nxt is None:  # end of stream: the last frame stays on screen
                break
            if self._prev is not None and self._time_of(nxt) > t:
                break
            self._advance()
        if self._prev is None:
            raise NotAVideoError("the video stream contains no decodable frame")
        return self._convert(self._prev), self._prev_time

    def _settled(self, t: float, lo: float) -> bool:
        """Whether the current frame may stand for time ``t`` without decoding further."""
        if self._prev is None:
            return False
        if self._prev_time > t:  # nothing earlier exists (late start, seek overshoot)
            return True
        return lo < t and self._prev_time >= lo

    def _jump(self, lo: float, t: float, hi: float) -> None:
        """Go straight to a keyframe in the window when that beats decoding up to it."""
        if self._next is not None and self._time_of(self._next) >= lo:
            return  # the next frame is already in the window
        keyframe = self.decoder.keyframe_ahead(lo, t, hi)
        if keyframe is not None and keyframe.worth_it:
            self.decoder.jump(keyframe)
            self._forget()

    # -- decoder cursor -------------------------------------------------------

    def _peek(self) -> av.VideoFrame | None:
        if self._next is None:
            self._next = self.decoder.next_frame()
        return self._next

    def _advance(self) -> None:
        nxt = self._peek()
        assert nxt is not None
        self._prev, self._prev_time, self._next = nxt, self._time_of(nxt), None

    def _forget(self) -> None:
        self._prev, self._prev_time, self._next = None, -np.inf, None

    def _time_of(self, frame: av.VideoFrame) -> float:
        if frame.time is not None:
            return float(frame.time)
        # No timestamps (some raw streams): count frames from the last known time.
        base = self._prev_time if np.isfinite(self._prev_time) else self.info.start_s
        return base + (1.0 / self.info.fps if np.isfinite(self._prev_time) else 0.0)

    # -- seeking --------------------------------------------------------------

    def _should_seek(self, t: float) -> bool:
        here = self._prev_time if self._prev is not None else self.info.start_s
        return self.can_seek and t - here > self.seek_cost_s

    def _seek(
        self, target: float, *, need: float, window_end: float = -np.inf, next_lo: float = np.inf
    ) -> None:
        """Seek to the keyframe at or before ``target``; decoding must then reach ``need``.

        A keyframe landed on inside ``[need, window_end)``, with ``need < target``,
        is the frame taken; when the next window lies a seek away from it too,
        nothing after it is needed and it is decoded alone.
        """
        here = self._prev_time
        moved = self.decoder.seek(target)
        self._forget()
        if not moved:  # the file cannot seek: the decoder is back at the start
            self.can_seek = False
            return
        key = self.decoder.upcoming_keyframe()
        alone = (
            key is not None
            and need < target
            and need <= key < window_end
            and self.can_seek
            and next_lo - key > self.seek_cost_s
        )
        if alone:
            self._next = self.decoder.keyframe_alone()
        landed = self._peek()
        if landed is None or self._time_of(landed) > target + 1.0 / self.info.fps:
            # The index lied (or there is none): decode from the start from now on.
            self.can_seek = False
            self.decoder.restart()
            self._forget()
            return
        landed_t = self._time_of(landed)
        # Seeking costs decoding from the keyframe to what is needed; remember the worst seen.
        self.seek_cost_s = max(self.seek_cost_s, need - landed_t)
        if np.isfinite(here) and landed_t < here:
            self.seek_cost_s = max(self.seek_cost_s, need - here)

    def _convert(self, frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
        # A short video repeats frames: convert each chosen frame once.
        if self._converted is not None and self._converted[0] is frame:
            return self._converted[1]
        scaled = self._scaler.reformat(
            frame, width=self.width, height=self.height, format="rgb24", interpolation="BILINEAR"
        )
        array = cast(npt.NDArray[np.uint8], scaled.to_ndarray())
        self._converted = (frame, array)
        return array
