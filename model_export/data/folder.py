"""Folder: the video files of a labelled folder, in UCF101-style layouts.

    DATA/<label>/<video files>                      split later, stratified and seeded
    DATA/{train,val,test}/<label>/<video files>     splits given
    DATA/<label>/<video files> + split lists        splits given by the lists

Hidden files and folders are ignored; labels are ordered as a generator's
``manifest.json`` lists them, otherwise by name. A folder that cannot be read,
or holds no labelled files, is a :class:`DataLayoutError` that shows these layouts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")

EXPECTED_LAYOUT = (
    "expected DATA/<label>/<videos> (split at random, by class), "
    "DATA/{train,val,test}/<label>/<videos> (splits given), "
    "or DATA/<label>/<videos> with --split-files TRAIN.txt TEST.txt [VAL.txt]"
)


class DataLayoutError(ValueError):
    """The data folder, its split lists or its grouping cannot give a sound split."""


@dataclass(frozen=True, slots=True)
class VideoFile:
    """One file found in the folder; ``rel`` is relative to the data root."""

    rel: str
    label: str
    split: str | None
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Folder:
    """What a data folder holds: its files, and every label folder (empty ones too)."""

    files: tuple[VideoFile, ...]
    label_dirs: tuple[str, ...]


def read_folder(root: Path) -> Folder:
    """Every non-hidden file under ``root/<label>/`` or ``root/<split>/<label>/``, sorted.

    Raises :class:`DataLayoutError` when ``root`` is missing, unreadable, or holds no
    label folder with a file in it.
    """
    if not root.exists():
        raise DataLayoutError(f"data folder {root} does not exist; {EXPECTED_LAYOUT}")
    if not root.is_dir():
        raise DataLayoutError(f"data folder {root} is not a folder; {EXPECTED_LAYOUT}")
    subdirs = _subdirs(root)
    given = [d for d in subdirs if d.name in SPLITS]
    found: list[VideoFile] = []
    label_dirs: set[str] = set()
    bases = [(d, d.name) for d in given] if given else [(root, None)]
    for base, split in bases:
        for label_dir in _subdirs(base):
            label_dirs.add(label_dir.name)
            _subdirs(label_dir)  # an unreadable label folder is an error, not "no files"
            for path in sorted(label_dir.rglob("*")):
                if path.is_file() and not any(p.startswith(".") for p in path.parts):
                    st = path.stat()
                    rel = path.relative_to(root).as_posix()
                    found.append(VideoFile(rel, label_dir.name, split, st.st_size, st.st_mtime_ns))
    if not label_dirs:
        where = f"{root} (nor in its {', '.join(d.name for d in given)} folders)" if given else root
        raise DataLayoutError(f"no label folders in {where}; {EXPECTED_LAYOUT}")
    if not found:
        names = examples(sorted(label_dirs))
        raise DataLayoutError(
            f"no files in the label folders of {root} ({names}); {EXPECTED_LAYOUT}"
        )
    return Folder(tuple(found), tuple(sorted(label_dirs)))


def scan(root: Path) -> list[VideoFile]:
    """The files of :func:`read_folder`."""
    return list(read_folder(root).files)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise DataLayoutError(f"cannot read {path}: {reason}; {EXPECTED_LAYOUT}") from err


def apply_split_lists(
    root: Path, files: Sequence[VideoFile], split_files: Sequence[Path]
) -> tuple[list[VideoFile], list[str]]:
    """``(listed files with their split set, paths of the files no list names)``.

    ``split_files`` are TRAIN.txt, TEST.txt and optionally VAL.txt in UCF101's
    format (see :func:`read_split_list`); they replace any split the folder gives.
    A listed path missing from the folder, or one listed in two lists, is a
    :class:`DataLayoutError`. A path that matches no file exactly may match one
    file whose path differs only in case (UCF101's lists spell some folders so).
    """
    if len(split_files) not in (2, 3):
        raise DataLayoutError(
            f"split files are TRAIN.txt TEST.txt [VAL.txt], got {len(split_files)} files"
        )
    names = ("train", "test", "val")[: len(split_files)]
    if any(f.split for f in files):
        log.info("the split lists replace the splits of %s's train/val/test folders", root)
    exact = {f.rel: i for i, f in enumerate(files)}
    folded: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        folded.setdefault(f.rel.casefold(), []).append(i)
    split_of: dict[int, tuple[str, Path]] = {}
    missing: list[str] = []
    missing_from: dict[str, None] = {}
    twice: list[str] = []
    for name, list_file in zip(names, split_files, strict=True):
        for entry in read_split_list(list_file, root):
            row = exact.get(entry)
            if row is None and len(candidates := folded.get(entry.casefold(), [])) == 1:
                row = candidates[0]
            if row is None:
                missing.append(entry)
                missing_from[list_file.name] = None
            elif row in split_of and split_of[row][0] != name:
                twice.append(f"{entry} ({split_of[row][1].name} and {list_file.name})")
            else:
                split_of[row] = (name, list_file)
    if missing:
        raise DataLayoutError(
            f"{len(missing)} files listed in {', '.join(missing_from)} are not in {root}: "
            f"{examples(missing)} "
            "(list paths relative to the data folder, e.g. <label>/<video>)"
        )
    if twice:
        raise DataLayoutError(f"{len(twice)} files are in two split lists: {examples(twice)}")
    listed = [replace(f, split=split_of[i][0]) for i, f in enumerate(files) if i in split_of]
    unlisted = [f.rel for i, f in enumerate(files) if i not in split_of]
    if unlisted:
        log.info("%d files in %s are in no split list: left out", len(unlisted), root)
    return listed, unlisted


def read_split_list(path: Path, root: Path) -> list[str]:
    """The paths a split list names, relative to ``root`` and ``/``-separated.

    UCF101's format: one path per line, relative to the data folder, optionally
    followed by whitespace and a class id (ignored); blank lines are skipped and
    Windows line endings and backslashes are tolerated.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else str(err)
        raise DataLayoutError(f"cannot read split list {path}: {reason}") from err
    entries = [_list_entry(line, root) for line in text.splitlines() if line.strip()]
    if not entries:
        raise DataLayoutError(f"split list {path} names no files")
    return entries


def _list_entry(line: str, root: Path) -> str:
    parts = line.strip().rsplit(maxsplit=1)
    entry = parts[0] if len(parts) == 2 and parts[1].isdigit() else line.strip()
    path = PurePosixPath(entry.replace("\\", "/"))
    if path.is_absolute():  # an absolute path into the data folder
        base = PurePosixPath(root.resolve().as_posix())
        path = path.relative_to(base) if path.is_relative_to(base) else path
    return path.as_posix()


def label_order(root: Path, files: Sequence[VideoFile]) -> tuple[str, ...]:
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


def examples(items: Sequence[str], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``: a few items for an error message."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"
