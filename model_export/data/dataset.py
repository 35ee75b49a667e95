"""Dataset: a labelled folder of videos -> decoded, cleaned, cached, split clips.

The stages: :mod:`~model_export.data.folder` finds the files and labels (and
reads split lists, when given), :mod:`~model_export.data.groups` finds which
clips come from one source video, :mod:`~model_export.data.cache` decodes each
once through the serving path (or, with a frozen encoder, straight into its
features: :mod:`~model_export.data.features`), :mod:`~model_export.data.split` assigns
train/val/test by whole groups (a missing val or test is carved out of train).
Files that do not decode, or are too short, are skipped with their reason and
listed; they never stop the run. A folder that cannot give a sound split is a
:class:`~model_export.data.folder.DataLayoutError`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
from model_export.data.folder import VideoFile, apply_split_lists, label_order, read_folder
from model_export.data.groups import AUTO, resolve_groups
from model_export.data.split import DEFAULT_FRACTIONS, Indices, assign_splits, require_enough
from model_export.data.store import Rows, RowView

log = logging.getLogger(__name__)

Geometry = tuple[int, int, int, int]  # frames decoded (3T), height, width, fewest usable
# (root, files, labels, geometry) -> each file's row (read on demand) and the decode index
# ({"kept", "sha256", "skipped"}): the pixel cache by default, an encoder's features else.
Decoder = Callable[
    [Path, Sequence[VideoFile], tuple[str, ...], Geometry], tuple[Rows, dict[str, Any]]
]


@dataclass(frozen=True)
class VideoDataset:
    """Decoded clips of a folder and its splits.

    ``clips`` is ``(N, 3T, H, W, 3) uint8`` (the cache's rows, read when indexed:
    :class:`~model_export.data.store.RowStore`), or ``(N, 3T, F) float32`` features
    where an encoder's :data:`Decoder` made the rows; ``targets`` ``(N,) int64`` class
    ids into ``labels``; ``splits`` maps ``train``/``val``/``test`` to indices into
    both. ``groups`` names the source-video group of each file (``""`` each, or
    empty, when ungrouped); ``unlisted`` are the folder's files that no split list
    names (left out); ``video_files`` are the files of the rows, in row order (to
    decode them again, e.g. into an encoder's features).
    """

    root: Path
    labels: tuple[str, ...]
    clips: Rows
    targets: npt.NDArray[np.int64]
    files: tuple[str, ...]
    splits: dict[str, Indices]
    num_frames: int
    fingerprint: str
    skipped: tuple[SkippedFile, ...] = field(default=())
    groups: tuple[str, ...] = field(default=())
    group_pattern: str | None = None
    split_files: tuple[str, ...] = field(default=())
    unlisted: tuple[str, ...] = field(default=())
    video_files: tuple[VideoFile, ...] = field(default=())

    def split(self, name: str, *, serving: bool = False) -> tuple[Clips, npt.NDArray[np.int64]]:
        """``(clips, targets)`` of one split (or ``"all"`` of them), loaded into memory.

        ``serving=True`` keeps only the serving frames: ``(n, T, H, W, 3)``;
        otherwise all ``3 T`` decoded frames for temporal jitter.
        """
        idx = self._indices(name)
        clips = np.asarray(self.clips[idx])
        if serving:
            clips = np.ascontiguousarray(serving_frames(clips))
        return clips, self.targets[idx]

    def view(self, name: str, *, serving: bool = False) -> tuple[RowView, npt.NDArray[np.int64]]:
        """``(rows, targets)`` of one split (or ``"all"``), read from the cache a batch at a
        time when indexed: what training and evaluation iterate over, in bounded memory.
        ``serving=True`` gives the served frames, ``(n, T, ...)``."""
        idx = self._indices(name)
        frames = slice(1, None, OVERSAMPLE) if serving else slice(None)
        return RowView(self.clips, idx, frames=frames), self.targets[idx]

    def _indices(self, name: str) -> Indices:
        if name == "all":
            return np.sort(np.concatenate(list(self.splits.values())))
        return self.splits[name]

    def splits_document(self) -> dict[str, Any]:
        """Every file of each split with its label and group, the files no split list
        names, and the skipped ones: JSON-able, for ``OUT/splits.json``."""

        def entry(i: int) -> dict[str, str]:
            group = self.groups[i] if self.groups else ""
            label = self.labels[int(self.targets[i])]
            return {"path": self.files[i], "label": label, "group": group}

        return {
            "group_pattern": self.group_pattern,
            "split_files": list(self.split_files),
            "splits": {name: [entry(int(i)) for i in idx] for name, idx in self.splits.items()},
            "unlisted": list(self.unlisted),
            "skipped": [asdict(s) for s in self.skipped],
        }


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
    split_files: Sequence[Path] = (),
    group_pattern: str | None = AUTO,
    decoder: Decoder | None = None,
) -> VideoDataset:
    """Scan, decode (or reuse the cache), clean and split the videos under ``root``.

    ``min_frames`` is the fewest distinct frames a usable video must have
    (default ``max(2, num_frames // 2)``). ``split_files`` (TRAIN.txt, TEST.txt
    [, VAL.txt], UCF101's format) give the splits; the folder's other files are
    left out. ``group_pattern`` finds the clips of one source video
    (:func:`~model_export.data.groups.resolve_groups`), which share a split.
    ``decoder`` makes the rows (default: :func:`pixel_decoder`).
    """
    folder = read_folder(root)
    files = list(folder.files)
    unlisted: list[str] = []
    if split_files:
        files, unlisted = apply_split_lists(root, files, split_files)
    labels = label_order(root, files)
    pattern, groups = resolve_groups([f.rel for f in files], group_pattern)
    label_id = {name: i for i, name in enumerate(labels)}
    targets = np.array([label_id[f.label] for f in files], dtype=np.int64)
    random_split = all(f.split is None for f in files)
    if random_split:  # before decoding: too few files are too few videos
        _require_enough(folder.label_dirs, labels, targets, groups, fractions)
    min_frames = max(2, num_frames // 2) if min_frames is None else min_frames
    geometry = (OVERSAMPLE * num_frames, height, width, min_frames)
    decode = decoder or pixel_decoder(cache_dir, workers=workers, progress=progress)
    clips, index = decode(root, files, labels, geometry)
    kept = np.flatnonzero(np.asarray(index["kept"], dtype=bool)).astype(np.int64)
    skipped = tuple(SkippedFile(**s) for s in index["skipped"])
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    if random_split:
        kept_groups = [groups[i] for i in kept]
        _require_enough(folder.label_dirs, labels, targets[kept], kept_groups, fractions)
    splits = assign_splits(files, kept, targets, seed=seed, fractions=fractions, groups=groups)
    fingerprint = data_fingerprint(
        [(files[i].rel, files[i].label, index["sha256"][i]) for i in kept]
    )
    log.info(
        "%d videos, %d labels, %d skipped, %d unlisted; split %s",
        len(kept),
        len(labels),
        len(skipped),
        len(unlisted),
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
        groups=groups,
        group_pattern=pattern,
        split_files=tuple(str(p) for p in split_files),
        unlisted=tuple(unlisted),
        video_files=tuple(files),
    )


def pixel_decoder(cache_dir: Path, *, workers: int, progress: bool) -> Decoder:
    """Rows of decoded pixels, from the cache under ``cache_dir`` (built when missing)."""

    def decode(
        root: Path, files: Sequence[VideoFile], labels: tuple[str, ...], geometry: Geometry
    ) -> tuple[Rows, dict[str, Any]]:
        key = cache_key(files, geometry)
        clips, index = load_cache(cache_dir, key)
        if clips is None:
            return build_cache(
                root, files, cache_dir, key, geometry, workers=workers, progress=progress
            )
        log.info("reusing decoded clips from %s", cache_dir / f"{key}.npy")
        return clips, index

    return decode


def _require_enough(
    label_dirs: Sequence[str],
    labels: Sequence[str],
    targets: npt.NDArray[np.int64],
    groups: Sequence[str],
    fractions: tuple[float, ...],
) -> None:
    """A random split needs, of every label, as many videos (or groups) as splits."""
    empty = [d for d in label_dirs if d not in labels]
    need = sum(f > 0 for f in fractions)
    require_enough(labels, targets, groups, need=need, empty=empty)
