"""Decode & sample one video for classification: the whole-video clip and, with
segments, one clip per window, all in one pass over the file.

:func:`decode_job` is what a decode worker runs for a request (and what offline
callers run for a file): :class:`DecodeJob` says what to sample, and
:class:`DecodedVideo` carries the clips back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.media.clip import EXACT, DecodeMode, decode_at, decode_clip
from service.media.probe import Limits, VideoInfo
from service.media.progress import FrameProgress
from service.media.timestamps import (
    FloatArray,
    effective_window,
    segment_centres,
    segment_windows,
    window_centres,
)


@dataclass(frozen=True, slots=True)
class DecodeJob:
    """What to sample from one video: the model's geometry, the limits, the windows."""

    num_frames: int
    height: int
    width: int
    limits: Limits
    window_s: float | None = None  # None: the whole video only
    max_segments: int = 1
    mode: DecodeMode = EXACT  # how near its time each frame must be; what may be skipped
    # Sample in two halves at once (the same frames): True when a core sits idle;
    # None: only a long video (service.media.clip.decode_at)
    halves: bool | None = None
    # A file the worker keeps the count of frames picked in (service.media.progress).
    progress_path: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedVideo:
    """The whole-video clip and, with segments, one clip per window."""

    info: VideoInfo
    clip: npt.NDArray[np.uint8]  # (T, H, W, 3)
    windows: FloatArray  # (W, 2) [start, end) seconds; (0, 2) without segments
    window_clips: npt.NDArray[np.uint8]  # (W, T, H, W, 3)
    decoded_frames: int
    window_s: float | None = None  # the window length used, with segments


def decode_job(path: str, job: DecodeJob) -> DecodedVideo:
    """Decode & sample: one pass for the whole video and all its windows."""
    progress = FrameProgress(job.progress_path) if job.progress_path else None
    try:
        return _decode(path, job, progress)
    finally:
        if progress is not None:
            progress.close()


def _decode(path: str, job: DecodeJob, progress: FrameProgress | None) -> DecodedVideo:
    t, h, w, mode = job.num_frames, job.height, job.width, job.mode
    if job.window_s is None:
        clip = decode_clip(
            path,
            num_frames=t,
            limits=job.limits,
            height=h,
            width=w,
            tolerance=mode.tolerance,
            skip_nonref=mode.skip_nonref,
            skip_loop_filter=mode.skip_loop_filter,
            halves=job.halves,
            progress=progress,
        )
        windows, window = np.empty((0, 2), dtype=np.float64), None
    else:
        window_s, max_segments = job.window_s, job.max_segments

        def times(info: VideoInfo) -> FloatArray:
            whole = segment_centres(info.duration_s, t, start_s=info.start_s)
            bounds = segment_windows(info.duration_s, window_s, max_segments, start_s=info.start_s)
            return np.concatenate([whole, window_centres(bounds, t).ravel()])

        def units(info: VideoInfo) -> FloatArray:
            # Tolerance is a fraction of each time's own segment: the whole video's or a window's.
            bounds = segment_windows(info.duration_s, window_s, max_segments, start_s=info.start_s)
            whole = np.full(t, info.duration_s / t)
            return np.concatenate([whole, np.repeat((bounds[:, 1] - bounds[:, 0]) / t, t)])

        clip = decode_at(
            path,
            times,
            limits=job.limits,
            height=h,
            width=w,
            tolerance=mode.tolerance,
            tolerance_unit=units,
            skip_nonref=mode.skip_nonref,
            skip_loop_filter=mode.skip_loop_filter,
            halves=job.halves,
            progress=progress,
        )
        windows = segment_windows(
            clip.info.duration_s, window_s, max_segments, start_s=clip.info.start_s
        )
        window = effective_window(clip.info.duration_s, window_s, max_segments)
    return DecodedVideo(
        info=clip.info,
        clip=clip.frames[:t],
        windows=windows,
        window_clips=clip.frames[t:].reshape(len(windows), t, h, w, 3),
        decoded_frames=clip.decoded_frames,
        window_s=window,
    )
