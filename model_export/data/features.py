"""Features: every decoded frame of a data set through a frozen encoder, once, cached.

A frozen encoder gives the same features every epoch, so they are computed
once, straight from the videos: each file is decoded through the serving path
(all ``3 T`` frames, so that temporal jitter can still pick one of each three)
and its frames go through the encoder at once; the cache keeps the features,
``(N, 3T, F) float32`` (``4 x 3T x F`` bytes a video), never the pixels
(``3T x H x W x 3`` bytes a video: 7.2 MB at 224 x 224). The plain frames get
one array, and so does each spatial mirror the labels allow (horizontal,
vertical, both), since a flipped frame's features are not a permutation of
the frame's own. The files live under ``CACHE/features/``, read by rows.

The key covers the files (paths, sizes, mtimes), the geometry, the encoder
file's sha256, its output and preprocessing, and the mirrors. An interrupted
run resumes at the first file its journal lacks
(:func:`model_export.data.cache.decode_rows`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model_export.data.augment import AugmentConfig
from model_export.data.cache import OVERSAMPLE, Clips, cache_key, decode_rows, write_index
from model_export.data.folder import VideoFile
from model_export.data.store import Rows, RowStore, RowWriter, create_rows
from model_export.nets.onnx_encoder import OnnxEncoder

log = logging.getLogger(__name__)

FEATURES_VERSION = 2  # bump when what a feature cache holds changes

Features = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Flip:
    """A spatial mirror of the frames (or none): which axes are reversed."""

    horizontal: bool = False
    vertical: bool = False

    @property
    def name(self) -> str:
        axes = ("h" if self.horizontal else "") + ("v" if self.vertical else "")
        return f"{axes}flip" if axes else "plain"

    def apply(self, clips: Clips) -> Clips:
        """``(n, S, H, W, 3) -> (n, S, H, W, 3)``, mirrored (a view, no copy)."""
        if self.horizontal:
            clips = clips[:, :, :, ::-1]
        if self.vertical:
            clips = clips[:, :, ::-1]
        return clips


PLAIN = Flip()


def allowed_flips(config: AugmentConfig) -> tuple[Flip, ...]:
    """The plain frames and every combination of the mirrors the labels allow
    (training mirrors each axis of a clip independently, as augment does)."""
    hs = (False, True) if config.hflip is not None else (False,)
    vs = (False, True) if config.vflip is not None else (False,)
    return tuple(Flip(h, v) for v in vs for h in hs)


@dataclass(frozen=True)
class FrameFeatures:
    """Cached per-frame features: ``views[flip]`` is an ``(N, 3T, F) float32`` store read
    by rows, in the order of the folder's files (skipped files are zeros)."""

    key: str
    views: Mapping[Flip, Rows]

    @property
    def feature_dim(self) -> int:
        return int(self.views[PLAIN].shape[2])

    def serving(self, rows: npt.NDArray[np.int64]) -> Features:
        """``(n, T, F)``: the features of exactly the frames the service decodes."""
        return np.ascontiguousarray(self.views[PLAIN][rows][:, 1::OVERSAMPLE])

    def pooled(self, rows: npt.NDArray[np.int64], *, chunk: int = 256) -> Features:
        """``(n, F)``: the serving frames' features averaged over time, read ``chunk``
        rows at a time (a split's features need not fit in memory at once)."""
        parts = [self.serving(rows[i : i + chunk]).mean(axis=1) for i in range(0, len(rows), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, self.feature_dim), np.float32)


def features_key(
    files: Sequence[VideoFile],
    geometry: tuple[int, int, int, int],
    encoder: OnnxEncoder,
    flips: Sequence[Flip],
) -> str:
    """Hash of what the features depend on: the files, geometry, encoder, mirrors."""
    info = encoder.info
    payload = [
        FEATURES_VERSION,
        cache_key(files, geometry),
        info.sha256,
        info.output_name,
        info.preprocessing.as_dict(),
        sorted(f.name for f in flips),
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class FeatureSink:
    """Decoded ``(3T, H, W, 3)`` frames -> the encoder's ``(3T, F)`` features of each
    mirror, written as one row of each mirror's array."""

    def __init__(self, encoder: OnnxEncoder, writers: dict[Flip, RowWriter]) -> None:
        self.encoder, self.writers = encoder, writers

    def write(self, row: int, frames: Clips) -> None:
        for flip, writer in self.writers.items():
            mirrored = np.ascontiguousarray(flip.apply(frames[None])[0])
            writer.write(row, self.encoder.encode(mirrored))

    def sync(self) -> None:
        for writer in self.writers.values():
            writer.sync()


def decode_features(
    root: Path,
    files: Sequence[VideoFile],
    geometry: tuple[int, int, int, int],
    encoder: OnnxEncoder,
    *,
    cache_dir: Path,
    flips: Sequence[Flip] = (PLAIN,),
    workers: int = 2,
    progress: bool = True,
) -> tuple[FrameFeatures, dict[str, Any]]:
    """Features of every frame of every file under ``root`` for each of ``flips``, and the
    decode index (``kept``, ``sha256``, ``skipped``), as :func:`~model_export.data.cache.
    build_cache` gives for pixels. The encoder runs only for what the cache lacks."""
    _, height, width, _ = geometry
    pre = encoder.info.preprocessing
    if (height, width) != (pre.height, pre.width):
        raise ValueError(
            f"frames of {height}x{width} but the encoder takes {pre.height}x{pre.width}"
        )
    flips = tuple(sorted(set(flips), key=lambda f: f.name))
    key = features_key(files, geometry, encoder, flips)
    folder = cache_dir / "features"
    index_path = folder / f"{key}.json"
    final = {flip: folder / f"{key}.{flip.name}.npy" for flip in flips}
    if index_path.is_file() and all(p.is_file() for p in final.values()):
        log.info("reusing encoder features from %s", folder / f"{key}.*.npy")
        index = json.loads(index_path.read_text())
    else:
        partial = {flip: folder / f"{key}.{flip.name}.partial.npy" for flip in flips}
        journal = folder / f"{key}.journal.jsonl"
        shape = (len(files), geometry[0], encoder.feature_dim)
        with _writers(partial, shape, journal) as writers:
            entries = decode_rows(
                root,
                files,
                geometry,
                FeatureSink(encoder, writers),
                journal=journal,
                workers=workers,
                progress=progress,
                desc="decode + encode",
            )
        for flip, path in partial.items():
            path.replace(final[flip])
        index = write_index(folder / f"{key}.json", journal, files, entries)
    views: dict[Flip, Rows] = {flip: RowStore(path) for flip, path in final.items()}
    return FrameFeatures(key=key, views=views), index


@contextlib.contextmanager
def _writers(
    partial: dict[Flip, Path], shape: tuple[int, int, int], journal: Path
) -> Iterator[dict[Flip, RowWriter]]:
    """Writers of the partial arrays: those of a stopped run are kept (``journal`` says
    which rows are done); otherwise new arrays, and no journal."""
    if not all(p.is_file() and RowStore(p).shape == shape for p in partial.values()):
        for path in partial.values():
            create_rows(path, shape, np.float32)
        journal.unlink(missing_ok=True)
    writers = {flip: RowWriter(path) for flip, path in partial.items()}
    try:
        yield writers
    finally:
        for writer in writers.values():
            writer.close()
