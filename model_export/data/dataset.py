"""Dataset: a labelled folder of videos -> decoded, cleaned, cached, split clips.

The stages: :mod:`~model_export.data.folder` finds the files and labels,
:mod:`~model_export.data.cache` decodes each once through the serving path,
:mod:`~model_export.data.split` assigns train/val/test (a missing val or test
is carved out of train). Files that do not decode, or are too short, are
skipped with their reason and listed; they never stop the run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model_export.data.cache import (
    OVERSAMPLE,
    Clips,
    SkippedFile,
    build_cache,
    cache_key,
    data_fingerprint,
    load_cache,
)
from model_export.data.folder import label_order, scan
from model_export.data.split import DEFAULT_FRACTIONS, Indices, assign_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoDataset:
    """Decoded clips of a folder and its splits.

    ``clips`` is ``(N, 3T, H, W, 3) uint8`` (a read-only memory map of the
    cache); ``targets`` ``(N,) int64`` class ids into ``labels``; ``splits``
    maps ``train``/``val``/``test`` to indices into both.
    """

    root: Path
    labels: tuple[str, ...]
    clips: Clips
    targets: npt.NDArray[np.int64]
    files: tuple[str, ...]
    splits: dict[str, Indices]
    num_frames: int
    fingerprint: str
    skipped: tuple[SkippedFile, ...] = field(default=())

    def split(self, name: str, *, serving: bool = False) -> tuple[Clips, npt.NDArray[np.int64]]:
        """``(clips, targets)`` of one split (or ``"all"`` of them), loaded into memory.

        ``serving=True`` keeps only the serving frames: ``(n, T, H, W, 3)``;
        otherwise all ``3 T`` decoded frames for temporal jitter.
        """
        if name == "all":
            idx = np.sort(np.concatenate(list(self.splits.values())))
        else:
            idx = self.splits[name]
        clips = np.asarray(self.clips[idx])
        if serving:
            clips = np.ascontiguousarray(serving_frames(clips))
        return clips, self.targets[idx]


def serving_frames(clips: Clips) -> Clips:
    """``(N, 3T, H, W, 3) -> (N, T, H, W, 3)``: exactly the frames the service decodes."""
    return clips[:, 1::OVERSAMPLE]


def load_dataset(
    root: Path,
    *,
    num_frames: int,
    height: int,
    width: int,
    cache_dir: Path,
    seed: int = 0,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    min_frames: int | None = None,
    workers: int = 2,
    progress: bool = True,
) -> VideoDataset:
    """Scan, decode (or reuse the cache), clean and split the videos under ``root``.

    ``min_frames`` is the fewest distinct frames a usable video must have
    (default ``max(2, num_frames // 2)``).
    """
    files = scan(root)
    if not files:
        raise FileNotFoundError(f"no video files under {root} (expected DATA/<label>/<files>)")
    labels = label_order(root, files)
    min_frames = max(2, num_frames // 2) if min_frames is None else min_frames
    geometry = (OVERSAMPLE * num_frames, height, width, min_frames)
    key = cache_key(files, geometry)
    clips, index = load_cache(cache_dir, key)
    if clips is None:
        clips, index = build_cache(
            root, files, cache_dir, key, geometry, workers=workers, progress=progress
        )
    else:
        log.info("reusing decoded clips from %s", cache_dir / f"{key}.npy")
    kept = np.flatnonzero(np.asarray(index["kept"], dtype=bool)).astype(np.int64)
    skipped = tuple(SkippedFile(**s) for s in index["skipped"])
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    label_id = {name: i for i, name in enumerate(labels)}
    targets = np.array([label_id[f.label] for f in files], dtype=np.int64)
    splits = assign_splits(files, kept, targets, seed=seed, fractions=fractions)
    fingerprint = data_fingerprint(
        [(files[i].rel, files[i].label, index["sha256"][i]) for i in kept]
    )
    log.info(
        "%d videos, %d labels, %d skipped; split %s",
        len(kept),
        len(labels),
        len(skipped),
        {k: len(v) for k, v in splits.items()},
    )
    return VideoDataset(
        root=root,
        labels=labels,
        clips=clips,
        targets=targets,
        files=tuple(f.rel for f in files),
        splits=splits,
        num_frames=num_frames,
        fingerprint=fingerprint,
        skipped=skipped,
    )
