"""The sampler: one forward pass over a stream that picks a frame for each time.

It decides, time by time, whether to decode forward, to seek to the keyframe
before the time, or to jump to a keyframe found by reading packets ahead; the
:class:`~service.media.cursor.PacketCursor` it drives does the mechanics. See
:mod:`service.media.clip` for the modes it honours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import av
import av.video
import av.video.reformatter
import numpy as np
import numpy.typing as npt

from service.core.errors import NotAVideoError
from service.media.cursor import PacketCursor
from service.media.probe import VideoInfo
from service.media.timestamps import FloatArray

# Before any seek has been measured, a gap longer than this is worth a seek.
INITIAL_SEEK_GAP_S = 1.0
# skip_nonref leaves frames this many intervals before a window decoded, so the
# frame on screen at a time is never one that was skipped.
SKIP_GUARD_FRAMES = 2


class FramePicker:
    """One forward pass over a stream that picks a frame for each time."""

    def __init__(self, cursor: PacketCursor, info: VideoInfo, *, height: int, width: int) -> None:
        self.cursor = cursor
        self.info = info
        self.height = height
        self.width = width
        self.seek_cost_s = INITIAL_SEEK_GAP_S
        self.can_seek = cursor.stream.time_base is not None
        self._converted: tuple[av.VideoFrame, npt.NDArray[np.uint8]] | None = None
        # One scaler for all frames: a frame's own would set up swscale every time.
        self._scaler = av.video.reformatter.VideoReformatter()
        self._prev: av.VideoFrame | None = None
        self._prev_time = -np.inf
        self._next: av.VideoFrame | None = None

    def run(
        self, wanted: FloatArray, slack: FloatArray, on_frame: Callable[[], None] | None = None
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
            if on_frame is not None:
                on_frame()
        return frames, chosen

    def _frame_at(
        self, t: float, lo: float, hi: float, *, next_lo: float = np.inf
    ) -> tuple[npt.NDArray[np.uint8], float]:
        """The frame for time ``t``: one in ``[lo, hi)``, else the one on screen at ``t``.

        ``next_lo`` is where the next time's window opens (``inf``: none follows).
        """
        if not self._settled(t, lo):
            self.cursor.skip_before(lo - SKIP_GUARD_FRAMES / self.info.fps)
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
        keyframe = self.cursor.keyframe_ahead(lo, t, hi)
        if keyframe is not None and keyframe.worth_it:
            self.cursor.jump(keyframe)
            self._forget()

    # -- decoder cursor -------------------------------------------------------

    def _peek(self) -> av.VideoFrame | None:
        if self._next is None:
            self._next = self.cursor.next_frame()
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
        moved = self.cursor.seek(target)
        self._forget()
        if not moved:  # the file cannot seek: the decoder is back at the start
            self.can_seek = False
            return
        key = self.cursor.upcoming_keyframe()
        alone = (
            key is not None
            and need < target
            and need <= key < window_end
            and self.can_seek
            and next_lo - key > self.seek_cost_s
        )
        if alone:
            self._next = self.cursor.keyframe_alone()
        landed = self._peek()
        if landed is None or self._time_of(landed) > target + 1.0 / self.info.fps:
            # The index lied (or there is none): decode from the start from now on.
            self.can_seek = False
            self.cursor.restart()
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
