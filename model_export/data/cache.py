"""Cache: every file decoded once through the serving path, kept as one ``.npy`` file.

Each file is decoded by :func:`service.media.clip.decode_clip` with ``3 T``
frames (temporal jitter picks one of each three; the frames ``1::3`` are the
serving clip), in worker processes, and stored in one ``(N, 3T, H, W, 3) uint8``
``.npy`` keyed by the file list, sizes, mtimes and geometry, so epochs and
re-runs never decode again; batches read it by rows
(:class:`~model_export.data.store.RowStore`). A file that does not decode, or is
too short, is recorded with its reason; it never stops the run.

Decoding is resumable: rows go into ``KEY.partial.npy`` and each finished file
is appended to ``KEY.journal.jsonl`` (after its row is on disk), so a stopped
run goes on from the first file the journal lacks. :func:`decode_rows` is the
loop; what a row becomes (pixels here, an encoder's features in
:mod:`model_export.data.features`) is its ``sink``'s business.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from model_export.data.folder import VideoFile
from model_export.data.store import RowStore, RowWriter, create_rows
from service.core.errors import VideoError
from service.media.clip import decode_clip

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when what a cache holds changes
OVERSAMPLE = 3  # frames decoded per served frame (temporal jitter picks one of each 3)
SYNC_EVERY = 16  # rows made durable (and journalled) at a time

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


def load_cache(cache_dir: Path, key: str) -> tuple[RowStore | None, dict[str, Any]]:
    index_path, clips_path = cache_dir / f"{key}.json", cache_dir / f"{key}.npy"
    if not (index_path.is_file() and clips_path.is_file()):
        return None, {}
    try:
        index = json.loads(index_path.read_text())
        clips = RowStore(clips_path)
    except (OSError, ValueError) as err:
        log.warning("ignoring an unreadable cache %s: %s", clips_path, err)
        return None, {}
    return clips, index


class Sink(Protocol):
    """Where decoded rows go: ``write`` one file's ``(3T, H, W, 3)`` frames as row ``row``;
    ``sync`` makes what was written durable."""

    def write(self, row: int, frames: Clips) -> None: ...

    def sync(self) -> None: ...


def build_cache(
    root: Path,
    files: Sequence[VideoFile],
    cache_dir: Path,
    key: str,
    geometry: tuple[int, int, int, int],
    *,
    workers: int,
    progress: bool,
) -> tuple[RowStore, dict[str, Any]]:
    """Decode ``files`` (or the rest of them, after a stopped run) into ``KEY.npy``."""
    frames, height, width, _ = geometry
    cache_dir.mkdir(parents=True, exist_ok=True)
    clips_path, index_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    partial, journal = cache_dir / f"{key}.partial.npy", cache_dir / f"{key}.journal.jsonl"
    shape = (len(files), frames, height, width, 3)
    if not (partial.is_file() and RowStore(partial).shape == shape):
        create_rows(partial, shape, np.uint8)
        journal.unlink(missing_ok=True)
    with RowWriter(partial) as sink:
        entries = decode_rows(
            root, files, geometry, sink, journal=journal, workers=workers, progress=progress
        )
    partial.replace(clips_path)
    index = write_index(index_path, journal, files, entries, version=CACHE_VERSION)
    return RowStore(clips_path), index


def write_index(
    path: Path,
    journal: Path,
    files: Sequence[VideoFile],
    entries: Sequence[dict[str, str]],
    **extra: object,
) -> dict[str, Any]:
    """The decode index at ``path``: which files decoded (``kept``), their ``sha256``, why
    the others did not (``skipped``). Written last, atomically: its presence marks a
    complete set, and the journal that led to it goes."""
    index = {
        **extra,
        "kept": [not e["reason"] for e in entries],
        "sha256": [e["sha256"] for e in entries],
        "skipped": [
            asdict(SkippedFile(f.rel, e["reason"]))
            for f, e in zip(files, entries, strict=True)
            if e["reason"]
        ],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index))
    tmp.replace(path)
    journal.unlink(missing_ok=True)
    return index


def decode_rows(
    root: Path,
    files: Sequence[VideoFile],
    geometry: tuple[int, int, int, int],
    sink: Sink,
    *,
    journal: Path,
    workers: int,
    progress: bool,
    desc: str = "decode",
) -> list[dict[str, str]]:
    """Decode every file the journal lacks into ``sink``; returns each file's entry
    ``{"sha256", "reason"}`` (reason ``""``: decoded), the journal's first."""
    entries = read_journal(journal)[: len(files)]
    if entries:
        log.info("resuming %s: %d of %d files already done", desc, len(entries), len(files))
    bar = tqdm(total=len(files), initial=len(entries), desc=desc, unit="video",
               disable=not progress)  # fmt: skip
    pending: list[dict[str, str]] = []
    with bar, journal.open("a") as log_file:
        start = len(entries)
        for row, result in enumerate(_decode_all(root, files[start:], geometry, workers), start):
            if result.frames is not None:
                sink.write(row, result.frames)
            pending.append({"sha256": result.sha256, "reason": result.reason})
            bar.update()
            if len(pending) >= SYNC_EVERY or row == len(files) - 1:
                sink.sync()  # the rows first, then the journal that counts them
                log_file.write("".join(json.dumps(e) + "\n" for e in pending))
                log_file.flush()
                entries += pending
                pending = []
    return entries


def read_journal(path: Path) -> list[dict[str, str]]:
    """The entries of complete lines (a line cut short by a crash is dropped)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            break
        if not isinstance(entry, dict) or not {"sha256", "reason"} <= entry.keys():
            break
        entries.append(entry)
    return entries


def _decode_all(
    root: Path, files: Sequence[VideoFile], geometry: tuple[int, int, int, int], workers: int
) -> Iterator[Decoded]:
    """Each file's :class:`Decoded`, in order; at most a few files ahead in flight, so
    memory holds a handful of decoded clips whatever the folder's size."""
    jobs = ((root / f.rel, geometry) for f in files)
    if workers <= 1:
        yield from (_decode_one(job) for job in jobs)
        return
    # spawn, not fork: the parent may hold torch's thread pools.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        window: deque[Future[Decoded]] = deque()
        for job in jobs:
            window.append(pool.submit(_decode_one, job))
            if len(window) >= 4 * workers:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


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


def serving_batches(
    root: Path,
    files: Sequence[VideoFile],
    geometry: tuple[int, int, int, int],
    *,
    batch: int,
    workers: int,
) -> Iterator[tuple[npt.NDArray[np.int64], Clips]]:
    """Decode ``files`` again as the service would (``geometry[0]`` frames each), ``batch``
    files at a time: ``(positions of the decoded files, (b, T, H, W, 3) uint8)``. Files
    that no longer decode are left out of their batch (their positions say which)."""
    positions: list[int] = []
    clips: list[Clips] = []
    for i, result in enumerate(_decode_all(root, files, geometry, workers)):
        if result.frames is not None:
            positions.append(i)
            clips.append(result.frames)
        if len(clips) == batch or (i == len(files) - 1 and clips):
            yield np.asarray(positions, dtype=np.int64), np.stack(clips)
            positions, clips = [], []
