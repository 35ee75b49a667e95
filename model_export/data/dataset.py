"""Dataset: a labelled folder of videos -> decoded, cleaned, cached, split clips.

Layouts (UCF101 style)::

    DATA/<label>/<video files>                      split here, stratified and seeded
    DATA/{train,val,test}/<label>/<video files>     splits given (a missing val or
                                                    test is carved out of train)

Every file is decoded ONCE, through the serving path
(:func:`service.decode.decode_clip`) with ``3 T`` frames: the frames ``1::3``
are exactly the serving clip, and training-time temporal jitter picks one of
each three. Clips are cached as one ``(N, 3T, H, W, 3) uint8`` ``.npy`` keyed
by the file list, sizes, mtimes and geometry, so epochs and re-runs never
decode again. Files that do not decode, or are too short, are skipped with
their reason and listed; they never stop the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from service.decode import decode_clip
from service.errors import VideoError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
CACHE_VERSION = 1  # bump when what a cache holds changes
OVERSAMPLE = 3  # frames decoded per served frame (temporal jitter picks one of each 3)

Clips = npt.NDArray[np.uint8]
Indices = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class VideoFile:
    """One file found in the folder; ``rel`` is relative to the data root."""

    rel: str
    label: str
    split: str | None
    size: int
    mtime_ns: int


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
    labels = _label_order(root, files)
    min_frames = max(2, num_frames // 2) if min_frames is None else min_frames
    geometry = (OVERSAMPLE * num_frames, height, width, min_frames)
    key = cache_key(files, geometry)
    clips, index = _load_cache(cache_dir, key)
    if clips is None:
        clips, index = _build_cache(
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
    splits = _assign_splits(files, kept, targets, seed=seed, fractions=fractions)
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


# -- scanning ----------------------------------------------------------------------


def scan(root: Path) -> list[VideoFile]:
    """Every non-hidden file under ``root/<label>/`` or ``root/<split>/<label>/``, sorted."""
    subdirs = _subdirs(root)
    given = [d for d in subdirs if d.name in SPLITS]
    found: list[VideoFile] = []
    groups = [(d, d.name) for d in given] if given else [(root, None)]
    for base, split in groups:
        for label_dir in _subdirs(base):
            for path in sorted(label_dir.rglob("*")):
                if path.is_file() and not any(p.startswith(".") for p in path.parts):
                    st = path.stat()
                    rel = path.relative_to(root).as_posix()
                    found.append(VideoFile(rel, label_dir.name, split, st.st_size, st.st_mtime_ns))
    return found


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _label_order(root: Path, files: Sequence[VideoFile]) -> tuple[str, ...]:
    """Labels as a generator's manifest orders them, otherwise sorted by name."""
    names = sorted({f.label for f in files})
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text()).get("labels")
        except (ValueError, AttributeError):
            listed = None
        if isinstance(listed, list) and set(names) <= set(listed):
            return tuple(str(x) for x in listed)
    return tuple(names)


# -- decoding and the cache --------------------------------------------------------


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


def _load_cache(cache_dir: Path, key: str) -> tuple[Clips | None, dict[str, Any]]:
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


def _build_cache(
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


# -- splitting ---------------------------------------------------------------------


def stratified_split(
    targets: npt.NDArray[np.int64],
    *,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[Indices]:
    """Positions ``0..len(targets)-1`` split per class in ``fractions``, seeded.

    Every split after the first gets at least one item of each class that has
    enough items for all splits. Returns one sorted ``(n_i,) int64`` array per fraction.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for cls in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == cls))
        n = len(members)
        counts = [round(n * f) for f in fractions[1:]]
        if n >= len(fractions):
            counts = [max(1, c) if f > 0 else 0 for c, f in zip(counts, fractions[1:], strict=True)]
        keep = 1 if fractions[0] > 0 and n >= len(fractions) else 0
        while sum(counts) > n - keep:  # rounding up may leave the first split empty
            counts[int(np.argmax(counts))] -= 1
        start = n - sum(counts)
        parts[0].extend(members[:start].tolist())
        for k, c in enumerate(counts, start=1):
            parts[k].extend(members[start : start + c].tolist())
            start += c
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def _assign_splits(
    files: Sequence[VideoFile],
    kept: Indices,
    targets: npt.NDArray[np.int64],
    *,
    seed: int,
    fractions: tuple[float, float, float],
) -> dict[str, Indices]:
    given = {s: kept[[files[i].split == s for i in kept]] for s in SPLITS}
    if not any(len(v) for v in given.values()):
        train, val, test = (
            kept[p] for p in stratified_split(targets[kept], fractions=fractions, seed=seed)
        )
        return {"train": train, "val": val, "test": test}
    # Given splits: carve whatever is missing out of train, in proportion.
    for name, frac in zip(SPLITS[1:], fractions[1:], strict=True):
        if len(given[name]) == 0 and len(given["train"]) > 0 and frac > 0:
            pool = given["train"]
            share = frac / (fractions[0] + frac)
            rest, carved = stratified_split(targets[pool], fractions=(1 - share, share), seed=seed)
            given["train"], given[name] = pool[rest], pool[carved]
            log.info("no %s split given: took %d videos from train", name, len(carved))
    return given
