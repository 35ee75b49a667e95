"""Which instants of a video to sample: pure functions of duration and counts.

The serving contract is TSN-style uniform sampling: split the video into
``T`` equal segments and take the frame on screen at each segment's centre.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLING_POLICY = "tsn-centre"

FloatArray = npt.NDArray[np.float64]


def segment_centres(duration_s: float, count: int, *, start_s: float = 0.0) -> FloatArray:
    """Centres of ``count`` equal segments of ``[start_s, start_s + duration_s)``.

    Returns ``(count,) float64`` seconds, strictly increasing when ``duration_s > 0``.
    """
    if count < 1:
        raise ValueError("count must be >= 1")
    step = max(duration_s, 0.0) / count
    return start_s + (np.arange(count, dtype=np.float64) + 0.5) * step


def window_bounds(duration_s: float, window_s: float, *, start_s: float = 0.0) -> FloatArray:
    """Consecutive windows of length ``window_s`` covering the whole video.

    The last window is shortened to end at the video's end.
    Returns ``(W, 2) float64`` rows of ``[start, end)`` seconds, ``W >= 1``.
    """
    if window_s <= 0:
        raise ValueError("window_s must be > 0")
    count = max(1, int(np.ceil(duration_s / window_s - 1e-9)))
    starts = start_s + np.arange(count, dtype=np.float64) * window_s
    ends = np.minimum(starts + window_s, start_s + duration_s)
    if duration_s <= 0:
        ends = starts.copy()
    return np.stack([starts, ends], axis=1)


def window_centres(bounds: FloatArray, count: int) -> FloatArray:
    """Segment centres of every window: ``(W, 2) -> (W, count)`` seconds."""
    return np.stack([segment_centres(end - start, count, start_s=start) for start, end in bounds])


def effective_window(duration_s: float, window_s: float, max_segments: int) -> float:
    """``window_s``, stretched so that at most ``max_segments`` windows cover the video."""
    return max(window_s, duration_s / max_segments)


def segment_windows(
    duration_s: float, window_s: float, max_segments: int, *, start_s: float = 0.0
) -> FloatArray:
    """``(W, 2)`` consecutive ``[start, end)`` windows covering the whole video."""
    window = effective_window(duration_s, window_s, max_segments)
    return window_bounds(duration_s, window, start_s=start_s)


def jittered_indices(
    num_available: int, count: int, rng: np.random.Generator, *, spread: float = 0.5
) -> npt.NDArray[np.int64]:
    """Training-time temporal jitter: one random index inside each of ``count`` segments.

    ``spread`` is the fraction of a segment the pick may move from its centre
    (0 = the serving centre, 1 = anywhere in the segment). Returns ``(count,) int64``
    sorted indices in ``[0, num_available)``.
    """
    seg = num_available / count
    centres = (np.arange(count) + 0.5) * seg
    offsets = rng.uniform(-0.5, 0.5, size=count) * seg * spread
    picks = np.floor(centres + offsets).astype(np.int64)
    return np.clip(np.sort(picks), 0, num_available - 1)
