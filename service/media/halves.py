"""Halves: one video's samples taken in two halves at once, each half with a demuxer
and decoder of its own (the later half on a thread: decoding and demuxing release
the GIL), and the pieces both halves share (:class:`Part`, the sampling of some
times with one decoder).

A video of a minute or more always goes in halves (its samples lie a seek or
more apart, so each half costs about what it would in one pass); a shorter one
only when the caller says a core is idle (``halves=True``) and the later half
starts at a keyframe of its own, found in the container's index. A file of 32
MiB or more gets its second demuxer opened while the first one probes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import av
import av.video
import numpy as np
import numpy.typing as npt

from service.media.cursor import PacketCursor
from service.media.picker import FramePicker
from service.media.probe import Limits, VideoInfo, open_video, video_stream
from service.media.progress import FrameProgress
from service.media.timestamps import FloatArray

# A video this long is sampled in two halves at once, each with a decoder of its own: its
# samples lie a seek or more apart, so each half costs about what it would in one pass.
SPLIT_MIN_DURATION_S = 60.0
# A file this big is likely that long: the later half's demuxer opens while the first probes.
EARLY_OPEN_MIN_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """How to sample some of a video's times with a decoder of one's own."""

    info: VideoInfo
    limits: Limits
    height: int
    width: int
    skip_nonref: bool
    skip_loop_filter: bool
    progress: FrameProgress | None = None  # told of each frame picked (a job's decode)

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
        frames, chosen = picker.run(wanted, slack, self.progress.frame if self.progress else None)
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


def sample_whole(
    path: str | Path, part: Part, wanted: FloatArray, slack: FloatArray
) -> tuple[npt.NDArray[np.uint8], FloatArray, int]:
    """One pass over all of ``wanted`` on a demuxer and decoder of its own."""
    opened = _Opened.open(path, part.limits)
    with opened.stack:
        return part.sample(opened.container, opened.stream, wanted, slack)


def open_early(path: str | Path, limits: Limits) -> concurrent.futures.Future[_Opened] | None:
    """For a big file, a second demuxer opening on the halves thread while this one probes."""
    try:
        big = Path(path).stat().st_size >= EARLY_OPEN_MIN_BYTES
    except OSError:
        return None  # the probe reports it
    return _halves_pool().submit(_Opened.open, path, limits) if big else None


def discard(opening: concurrent.futures.Future[_Opened]) -> None:
    """Close an early demuxer nobody needs, on its thread; it may not have opened yet."""
    if not opening.cancel():
        _halves_pool().submit(_close, opening)


def _close(opening: concurrent.futures.Future[_Opened]) -> None:
    with contextlib.suppress(Exception):  # an open that failed has nothing to close
        opening.result().stack.close()


def splits(
    stream: av.video.VideoStream, info: VideoInfo, wanted: FloatArray, halves: bool | None
) -> bool:
    """Whether to sample a file in two halves at once: one that can seek, when asked to
    (a core is idle) or, unless told not to, when it is long."""
    if halves is False or stream.time_base is None or len(wanted) < 2:
        return False
    return halves is True or is_long(info)


def is_long(info: VideoInfo) -> bool:
    return info.duration_s >= SPLIT_MIN_DURATION_S


# Containers with an index, where a seek lands on a keyframe and a rewind is exact: only
# there does a short video go in halves (raw streams and MPEG-TS are read in one pass).
INDEXED_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "avi"})


def indexed(info: VideoInfo) -> bool:
    return not INDEXED_FORMATS.isdisjoint(info.container.split(","))


def later_half_has_own_keyframe(
    container: av.container.InputContainer, stream: av.video.VideoStream, wanted: FloatArray
) -> bool:
    """Whether the keyframe before the later half's first time lies after the earlier
    half's last time (so the later half decodes nothing the earlier one does). Two seeks
    and one packet on the probed demuxer, rewound after; ``False`` where it cannot tell."""
    order = np.sort(wanted)
    first_later, last_earlier = order[len(order) // 2], order[len(order) // 2 - 1]
    tb = stream.time_base
    if tb is None:
        return False
    try:
        container.seek(int(first_later / tb), stream=stream, backward=True, any_frame=False)
        packet = next((p for p in container.demux(stream) if p.pts is not None), None)
        own = (
            packet is not None and packet.pts is not None and float(packet.pts * tb) > last_earlier
        )
        container.seek(0)
    except (av.FFmpegError, OverflowError, ValueError):
        return False
    return own


def sample_halves(
    source: str | Path,
    container: av.container.InputContainer,
    stream: av.video.VideoStream,
    *,
    part: Part,
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
