"""Features: every decoded frame of a data set through a frozen encoder, once, cached.

A frozen encoder gives the same features every epoch, so they are computed
once: for each clip of the decoded-clip cache (``(N, 3T, H, W, 3) uint8``, all
``3 T`` frames so that temporal jitter can still pick one of each three),
``(N, 3T, F) float32``, stored as ``.npy`` memory maps under
``CACHE/features/``. The plain frames get one array, and so does each spatial
mirror the labels allow (horizontal, vertical, both), since a flipped frame's
features are not a permutation of the frame's own.

The key covers the decoded clips (their cache file and the data fingerprint),
the encoder file's sha256 and the preprocessing. An interrupted run resumes
where it stopped: rows are written in order and a counter beside the partial
array says how many are done.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from model_export.data.augment import AugmentConfig
from model_export.data.cache import OVERSAMPLE, Clips
from model_export.data.dataset import VideoDataset
from model_export.nets.encoder_spec import EncoderInfo
from model_export.nets.onnx_encoder import OnnxEncoder

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when what a feature cache holds changes
CLIPS_PER_CHUNK = 8  # rows written (and counted as done) at a time

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
    """Cached per-frame features: ``views[flip]`` is ``(N, 3T, F) float32`` (read-only
    memory maps, rows in the order of the data set's clips; skipped files are zeros)."""

    key: str
    views: dict[Flip, Features]

    @property
    def feature_dim(self) -> int:
        return int(self.views[PLAIN].shape[2])

    def serving(self, rows: npt.NDArray[np.int64]) -> Features:
        """``(n, T, F)``: the features of exactly the frames the service decodes."""
        return np.ascontiguousarray(self.views[PLAIN][rows][:, 1::OVERSAMPLE])


def features_key(data: VideoDataset, info: EncoderInfo) -> str:
    """Hash of what the features depend on: the clips, the encoder file, preprocessing."""
    clips = data.clips
    source = Path(clips.filename).stem if isinstance(clips, np.memmap) and clips.filename else ""
    payload = [
        FEATURES_VERSION,
        source,
        data.fingerprint,
        list(clips.shape),
        info.sha256,
        info.output_name,
        info.preprocessing.as_dict(),
    ]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def extract_features(
    data: VideoDataset,
    encoder: OnnxEncoder,
    *,
    cache_dir: Path,
    flips: Sequence[Flip] = (PLAIN,),
    progress: bool = True,
) -> FrameFeatures:
    """Features of every frame of every usable clip, for each of ``flips`` (cached).

    The encoder runs only for what the cache lacks; a complete cache never opens it.
    """
    pre = encoder.info.preprocessing
    if data.clips.shape[2:4] != (pre.height, pre.width):
        raise ValueError(
            f"clips are {data.clips.shape[2:4]} but the encoder takes {pre.height}x{pre.width}"
        )
    key = features_key(data, encoder.info)
    folder = cache_dir / "features"
    rows = np.sort(np.concatenate(list(data.splits.values()))).astype(np.int64)
    views: dict[Flip, Features] = {}
    missing = [f for f in flips if not (folder / f"{key}.{f.name}.npy").is_file()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        done = {f: _done(folder, key, f) for f in missing}
        bar = tqdm(
            total=len(rows) * len(missing),
            initial=sum(done.values()),
            desc="features",
            unit="clip",
            disable=not progress,
        )
        with bar:
            for flip in missing:
                _fill(
                    data.clips,
                    rows,
                    encoder,
                    folder=folder,
                    key=key,
                    flip=flip,
                    done=done[flip],
                    bar=bar,
                )
    else:
        log.info("reusing encoder features from %s", folder / f"{key}.*.npy")
    for flip in flips:
        views[flip] = np.load(folder / f"{key}.{flip.name}.npy", mmap_mode="r")
    return FrameFeatures(key=key, views=views)


def _done(folder: Path, key: str, flip: Flip) -> int:
    """How many rows an interrupted run already wrote (0 if none, or unreadable)."""
    partial, counter = _partial(folder, key, flip)
    try:
        return int(counter.read_text()) if partial.is_file() else 0
    except (OSError, ValueError):
        return 0


def _partial(folder: Path, key: str, flip: Flip) -> tuple[Path, Path]:
    return folder / f"{key}.{flip.name}.partial.npy", folder / f"{key}.{flip.name}.done"


def _fill(
    clips: Clips,
    rows: npt.NDArray[np.int64],
    encoder: OnnxEncoder,
    *,
    folder: Path,
    key: str,
    flip: Flip,
    done: int,
    bar: tqdm,
) -> None:
    """Compute ``flip``'s features from row ``done`` of ``rows`` on; rename when complete."""
    partial, counter = _partial(folder, key, flip)
    n, frames = clips.shape[0], clips.shape[1]
    shape = (n, frames, encoder.feature_dim)
    out: np.memmap[Any, np.dtype[np.float32]] = np.lib.format.open_memmap(
        partial, mode="r+" if done else "w+", dtype=np.float32, shape=None if done else shape
    )
    if out.shape != shape:  # a partial array from another encoder output: start again
        del out
        done = 0
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    for start in range(done, len(rows), CLIPS_PER_CHUNK):
        chunk = rows[start : start + CLIPS_PER_CHUNK]
        batch = np.ascontiguousarray(flip.apply(np.asarray(clips[chunk])))
        feats = encoder.encode(batch.reshape(-1, *batch.shape[2:]))
        out[chunk] = feats.reshape(len(chunk), frames, -1)
        out.flush()
        counter.write_text(str(start + len(chunk)))
        bar.update(len(chunk))
    del out
    partial.replace(folder / f"{key}.{flip.name}.npy")
    counter.unlink(missing_ok=True)
