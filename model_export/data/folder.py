"""Folder: the video files of a labelled folder, in UCF101-style layouts.

    DATA/<label>/<video files>                      split later, stratified and seeded
    DATA/{train,val,test}/<label>/<video files>     splits given

Hidden files and folders are ignored; labels are ordered as a generator's
``manifest.json`` lists them, otherwise by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, slots=True)
class VideoFile:
    """One file found in the folder; ``rel`` is relative to the data root."""

    rel: str
    label: str
    split: str | None
    size: int
    mtime_ns: int


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
