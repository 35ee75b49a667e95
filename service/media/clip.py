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
when a core is free, and so is any video when the caller knows a core is
idle (``halves=True``: the service's lone request); for a file of 32 MiB or
more that second demuxer opens while the first one probes. Its frames are
those of one pass: always with exact frames, and with a tolerance whenever
one pass would also seek between the halves (samples further apart than the
file's keyframe interval).

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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from service.core.errors import VideoError
from service.media.halves import (
    Part,
    discard,
    indexed,
    is_long,
    later_half_has_own_keyframe,
    open_early,
    sample_halves,
    sample_whole,
    splits,
)
from service.media.probe import (
    Limits,
    Source,
    VideoInfo,
    check_limits,
    open_probed,
)
from service.media.progress import FrameProgress
from service.media.timestamps import FloatArray, segment_centres

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
    halves: bool | None = None,
    progress: FrameProgress | None = None,
) -> Clip:
    """``num_frames`` frames at the centres of equal segments, as ``(T, H, W, 3) uint8``.

    ``tolerance`` is the fraction of a segment a frame may lie from its centre
    and still be taken (0 = the frame on screen at the centre); see the module
    docstring for ``skip_nonref``, ``skip_loop_filter`` and ``halves``.
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
        halves=halves,
        progress=progress,
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
    halves: bool | None = None,
    progress: FrameProgress | None = None,
) -> Clip:
    """Frames on screen at ``times`` (seconds, or a function of the probed info).

    Returns one frame per requested time, ``(len(times), H, W, 3) uint8``, in
    the order of ``times``. A frame lying within ``tolerance * unit`` seconds
    of a time may stand for it; ``unit`` is one frame interval by default, or
    what ``tolerance_unit`` gives: seconds, for all times or ``(len(times),)``.
    ``halves``: sample in two halves at once (the same frames, sooner when a core
    is free: a caller that knows one is idle says ``True``); ``None``: only a long
    video; ``False``: never. ``progress`` is told how many frames there are to pick,
    then of each one picked.
    """
    if height < 1 or width < 1:
        raise ValueError("height and width must be >= 1")
    limits = limits or Limits()
    path = source if isinstance(source, str | Path) else None
    early = open_early(path, limits) if path is not None else None
    try:
        with open_probed(source, max_pixels=limits.max_pixels) as (container, stream, info):
            check_limits(info, limits)
            wanted = np.asarray(times(info) if callable(times) else times, dtype=np.float64)
            unit = tolerance_unit(info) if tolerance_unit else 1.0 / info.fps
            slack = np.broadcast_to(np.maximum(tolerance * np.asarray(unit), 0.0), wanted.shape)
            part = Part(info, limits, height, width, skip_nonref, skip_loop_filter, progress)
            if progress is not None:
                progress.start(len(wanted))
            split = path is not None and splits(stream, info, wanted, halves)
            # A short video goes in halves only because a core is idle, and only where
            # that pays: the later half starts at a keyframe of its own (else it decodes
            # what the earlier does), found in an index (a raw stream cannot say).
            spare_core = split and not is_long(info)
            if spare_core:
                split = indexed(info) and later_half_has_own_keyframe(container, stream, wanted)
            if not split:
                frames, chosen, decoded = part.sample(container, stream, wanted, slack)
            else:
                assert path is not None
                opening, early = early, None  # the later half takes it over
                try:
                    frames, chosen, decoded = sample_halves(
                        path, container, stream, part=part, wanted=wanted, slack=slack,
                        opening=opening,
                    )  # fmt: skip
                except VideoError:
                    if not spare_core:
                        raise
                    if progress is not None:  # counted again from the start
                        progress.start(len(wanted))
                    # A half alone may fail where one pass copes (a stream that turns
                    # huge or corrupt after its start): the answer is one pass's.
                    frames, chosen, decoded = sample_whole(path, part, wanted, slack)
    finally:
        if early is not None:
            discard(early)
    return Clip(frames=frames, times_s=chosen, info=info, decoded_frames=decoded)
