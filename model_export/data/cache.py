"""Cache: every file decoded once through the serving path, kept as one memory map.

Each file is decoded by :func:`service.media.clip.decode_clip` with ``3 T``
frames (temporal jitter picks one of each three; the frames ``1::3`` are the
serving clip), in worker processes, and stored in one ``(N, 3T, H, W, 3) uint8``
``.npy`` keyed by the file list, sizes, mtimes and geometry, so epochs and
re-runs never decode again. A file that does not decode, or is too short, is
recorded with its reason; it never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from model_export.data.folder import VideoFile
from service.core.errors import VideoError
from service.media.clip import decode_clip

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what a cache holds changes
OVERSAMPLE = 3  # frames decoded per served frame (temporal jitter picks one of each 3)

Clips = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a worker sends back for one file: frames, or why there are none."""

    frames: Clips | None
    reason: str
    sha256: str


def cache_key(files: Sequence[VideoFile], geometry: tuple[int, ...]) -> str:
    """Hash of what the decoded clips depend on: files (path, size, mtime) and geometry."""
    h = hashlib.sha256(json.dumps([CACHE_VERSION, list(geometry)]).encode())
    for f in files:
        h.update(f"{f.rel}\0{f.size}\0{f.mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def data_fingerprint(entries: Sequence[tuple[str, str, str]]) -> str:
    """sha256 over ``(path, label, content sha256)`` of every video used."""
    h = hashlib.sha256()
    for rel, label, digest in sorted(entries):
        h.update(f"{rel}\0{label}\0{digest}\n".encode())
    return h.hexdigest()


def load_cache(cache_dir: Path, key: str) -> tuple[Clips | None, dict[str, Any]]:
    index_path, clips_path = cache_dir / f"{key}.json", cache_dir / f"{key}.npy"
    if not (index_path.is_file() and clips_path.is_file()):
        return None, {}
    try:
        index = json.loads(index_path.read_text())
        clips: Clips = np.load(clips_path, mmap_mode="r")
    except (OSError, ValueError) as err:
        log.warning("ignoring an unreadable cache %s: %s", clips_path, err)
        return None, {}
    return clips, index


def build_cache(
    root: Path,
    files: Sequence[VideoFile],
    cache_dir: Path,
    key: str,
    geometry: tuple[int, int, int, int],
    *,
    workers: int,
    progress: bool,
) -> tuple[Clips, dict[str, Any]]:
    frames, height, width, _ = geometry
    cache_dir.mkdir(parents=True, exist_ok=True)
    clips_path, index_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    tmp = cache_dir / f"{key}.{os.getpid()}.npy.tmp"
    kept: list[bool] = []
    digests: list[str] = []
    skipped: list[dict[str, str]] = []
    try:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(files), frames, height, width, 3)
        )
        results = _decode_all(root, files, geometry, workers=workers)
        bar = tqdm(results, total=len(files), desc="decode", unit="video", disable=not progress)
        for i, result in enumerate(bar):
            digests.append(result.sha256)
            kept.append(result.frames is not None)
            if result.frames is None:
                skipped.append(asdict(SkippedFile(files[i].rel, result.reason)))
            else:
                out[i] = result.frames
        out.flush()
        del out
        tmp.replace(clips_path)
    finally:
        tmp.unlink(missing_ok=True)
    index = {"version": CACHE_VERSION, "kept": kept, "sha256": digests, "skipped": skipped}
    index_tmp = index_path.with_suffix(".json.tmp")
    index_tmp.write_text(json.dumps(index))
    index_tmp.replace(index_path)  # written last: its presence marks a complete cache
    clips: Clips = np.load(clips_path, mmap_mode="r")
    return clips, index


def _decode_all(
    root: Path, files: Sequence[VideoFile], geometry: tuple[int, int, int, int], *, workers: int
) -> Iterator[Decoded]:
    jobs = [(root / f.rel, geometry) for f in files]
    if workers <= 1:
        yield from (_decode_one(job) for job in jobs)
        return
    # spawn, not fork: the parent may hold torch's thread pools.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_decode_one, jobs, chunksize=4)


def _decode_one(job: tuple[Path, tuple[int, int, int, int]]) -> Decoded:
    """Decode one file through the serving path; never raises for a bad file."""
    path, (frames, height, width, min_frames) = job
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        return Decoded(None, f"unreadable: {err.strerror or type(err).__name__}", "")
    try:
        clip = decode_clip(path, num_frames=frames, height=height, width=width)
    except VideoError as err:
        return Decoded(None, f"{type(err).__name__}: {err.detail}", digest)
    except Exception as err:  # a decoder surprise must not end a long run
        return Decoded(None, f"unexpected {type(err).__name__}: {str(err)[:200]}", digest)
    distinct = len(np.unique(clip.times_s))
    if distinct < min_frames:
        return Decoded(None, f"too short: {distinct} frames, need {min_frames}", digest)
    return Decoded(clip.frames, "", digest)
