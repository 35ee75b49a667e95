"""Decode & sample: the one path from a video file to a ``uint8 [T, H, W, 3]`` clip.

Training, evaluation and serving all call :func:`decode_clip` (or
:func:`decode_at` for many windows at once), so there is no skew between
what the model learnt from and what it is served.

Cost follows the number of sampled frames, not the video's length: the
decoder runs forward while the next sample is near, and seeks (to the
keyframe before it) when the gap is larger than what a seek has been seen
to cost in this file. Decoding stops after the last sample. Each chosen
frame is scaled and converted by FFmpeg's swscale (bilinear) straight to
the model's ``H x W`` RGB, so full-size RGB frames are never built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import av
import av.container
import av.video
import numpy as np
import numpy.typing as npt

from service.errors import LimitExceededError, NotAVideoError
from service.sampling import FloatArray, segment_centres
from service.video import (
    Limits,
    Source,
    VideoInfo,
    check_frame_size,
    check_limits,
    open_probed,
)

# Before any seek has been measured, a gap longer than this is worth a seek.
INITIAL_SEEK_GAP_S = 1.0
TimesFor = Callable[[VideoInfo], FloatArray]
# Corrupt packets tolerated before the file is declared undecodable.
MAX_BAD_PACKETS = 64


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
) -> Clip:
    """``num_frames`` frames at the centres of equal segments, as ``(T, H, W, 3) uint8``.

    ``tolerance`` is the fraction of a segment a frame may lie from its centre
    and still be taken (0 = the frame on screen at the centre).
    """
    return decode_at(
        source,
        lambda info: segment_centres(info.duration_s, num_frames, start_s=info.start_s),
        height=height,
        width=width,
        limits=limits,
        tolerance=tolerance,
        tolerance_unit=lambda info: info.duration_s / num_frames,
    )


def decode_at(
    source: Source,
    times: FloatArray | TimesFor,
    *,
    height: int,
    width: int,
    limits: Limits | None = None,
    tolerance: float = 0.0,
    tolerance_unit: Callable[[VideoInfo], float] | None = None,
) -> Clip:
    """Frames on screen at ``times`` (seconds, or a function of the probed info).

    Returns one frame per requested time, ``(len(times), H, W, 3) uint8``, in
    the order of ``times``. A frame lying within ``tolerance * unit`` seconds
    of a time may stand for it (``unit`` defaults to one frame interval).
    """
    if height < 1 or width < 1:
        raise ValueError("height and width must be >= 1")
    limits = limits or Limits()
    with open_probed(source) as (container, stream, info):
        check_limits(info, limits)
        wanted = np.asarray(times(info) if callable(times) else times, dtype=np.float64)
        unit = tolerance_unit(info) if tolerance_unit else 1.0 / info.fps
        sampler = _Sampler(container, stream, info, limits, height=height, width=width)
        frames, chosen = sampler.run(wanted, slack_s=max(tolerance * unit, 0.0))
    return Clip(frames=frames, times_s=chosen, info=info, decoded_frames=sampler.decoded)


class _Sampler:
    """One forward pass over a stream that picks the frame on screen at each time."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.VideoStream,
        info: VideoInfo,
        limits: Limits,
        *,
        height: int,
        width: int,
    ) -> None:
        self.container = container
        self.stream = stream
        self.info = info
        self.limits = limits
        self.height = height
        self.width = width
        self.decoded = 0
        self.seek_cost_s = INITIAL_SEEK_GAP_S
        self.can_seek = True
        self._converted: tuple[av.VideoFrame, npt.NDArray[np.uint8]] | None = None
        self._frames: Iterator[av.VideoFrame] = self._decode()
        self._prev: av.VideoFrame | None = None
        self._prev_time = -np.inf
        self._next: av.VideoFrame | None = None

    def run(
        self, wanted: FloatArray, *, slack_s: float
    ) -> tuple[npt.NDArray[np.uint8], FloatArray]:
        order = np.argsort(wanted, kind="stable")
        frames = np.empty((len(wanted), self.height, self.width, 3), dtype=np.uint8)
        chosen = np.empty(len(wanted), dtype=np.float64)
        for idx in order:
            frame, t = self._frame_at(float(wanted[idx]), slack_s)
            frames[idx] = frame
            chosen[idx] = t
        return frames, chosen

    def _frame_at(self, t: float, slack_s: float) -> tuple[npt.NDArray[np.uint8], float]:
        if self._should_seek(t):
            self._seek(t)
        while not self._settled(t, slack_s):
            nxt = self._peek()
            if nxt is None:  # end of stream: the last frame stays on screen
                break
            if self._prev is not None and self._time_of(nxt) > t:
                break
            self._advance()
        if self._prev is None:
            raise NotAVideoError("the video stream contains no decodable frame")
        return self._convert(self._prev), self._prev_time

    def _settled(self, t: float, slack_s: float) -> bool:
        """Whether the current frame may stand for time ``t`` without decoding further."""
        if self._prev is None:
            return False
        if self._prev_time > t:  # nothing earlier exists (late start, seek overshoot)
            return True
        return slack_s > 0 and self._prev_time >= t - slack_s

    # -- decoder cursor -------------------------------------------------------

    def _decode(self) -> Iterator[av.VideoFrame]:
        bad = 0
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, ValueError):
                # A demuxer error ends the stream; what was decoded so far stands.
                return
            try:
                decoded = packet.decode()
            except (av.FFmpegError, ValueError) as err:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise NotAVideoError("too many corrupt packets in the video stream") from err
                continue
            for frame in decoded:
                if isinstance(frame, av.VideoFrame):
                    yield frame

    def _peek(self) -> av.VideoFrame | None:
        if self._next is None:
            self._next = next(self._frames, None)
            if self._next is not None:
                self.decoded += 1
                if self.decoded > self.limits.max_frames:
                    raise LimitExceededError(
                        f"the stream holds more than {self.limits.max_frames} frames"
                    )
                check_frame_size(self._next.width, self._next.height, self.limits)
        return self._next

    def _advance(self) -> None:
        nxt = self._peek()
        assert nxt is not None
        self._prev, self._prev_time, self._next = nxt, self._time_of(nxt), None

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

    def _seek(self, t: float) -> None:
        here = self._prev_time
        tb = self.stream.time_base
        if tb is None:
            self.can_seek = False
            return
        try:
            self.container.seek(int(t / tb), stream=self.stream, backward=True, any_frame=False)
        except (av.FFmpegError, OverflowError, ValueError):
            self.can_seek = False
            self._restart()
            return
        self._frames = self._decode()
        self._prev, self._prev_time, self._next = None, -np.inf, None
        landed = self._peek()
        if landed is None or self._time_of(landed) > t + 1.0 / self.info.fps:
            # The index lied (or there is none): decode from the start from now on.
            self.can_seek = False
            self._restart()
            return
        landed_t = self._time_of(landed)
        # Seeking to t costs decoding from the keyframe to t; remember the worst seen.
        self.seek_cost_s = max(self.seek_cost_s, t - landed_t)
        if np.isfinite(here) and landed_t < here:
            self.seek_cost_s = max(self.seek_cost_s, t - here)

    def _restart(self) -> None:
        try:
            self.container.seek(0)
        except av.FFmpegError as err:
            raise NotAVideoError("the video cannot be rewound for decoding") from err
        self._frames = self._decode()
        self._prev, self._prev_time, self._next = None, -np.inf, None

    def _convert(self, frame: av.VideoFrame) -> npt.NDArray[np.uint8]:
        # A short video repeats frames: convert each chosen frame once.
        if self._converted is not None and self._converted[0] is frame:
            return self._converted[1]
        array = cast(
            npt.NDArray[np.uint8],
            frame.to_ndarray(
                width=self.width, height=self.height, format="rgb24", interpolation="BILINEAR"
            ),
        )
        self._converted = (frame, array)
        return array
