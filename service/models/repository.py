"""What a model repository directory holds: ``DIR/<name>/<version>/model.onnx``.

Triton's layout, which teams already know. A version is a directory of digits
(``1``, ``2``, ...; higher is newer) holding ``model.onnx``; anything else (a
staging directory such as ``.2.tmp``, a README) is ignored, so a version is
best written elsewhere and renamed in. :func:`scan` is pure file-system reading:
the registry decides what to load.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "model.onnx"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True, slots=True)
class VersionFile:
    """One ``<name>/<version>/model.onnx`` and what it looked like when scanned."""

    name: str
    version: str
    path: Path
    signature: tuple[int, int]  # (size, mtime_ns): a change means a new file


def version_key(version: str) -> tuple[int, int | str]:
    """Order of versions, newest last: numbers by value, anything else after them."""
    return (0, int(version)) if version.isdigit() else (1, version)


def scan(root: Path) -> dict[tuple[str, str], VersionFile]:
    """Every well-formed version under ``root`` that holds its model file."""
    found: dict[tuple[str, str], VersionFile] = {}
    for name_dir in _subdirs(root):
        if not _NAME.fullmatch(name_dir.name):
            continue
        for version_dir in _subdirs(name_dir):
            if not _VERSION.fullmatch(version_dir.name):
                continue
            path = version_dir / MODEL_FILE
            try:
                stat = path.stat()
            except OSError:  # not there yet, or gone meanwhile
                continue
            version = str(int(version_dir.name))  # "007" is version 7
            key = (name_dir.name, version)
            found[key] = VersionFile(key[0], key[1], path, (stat.st_size, stat.st_mtime_ns))
    return found


def sha256_of(path: Path) -> str:
    """The file's SHA-256, hex (what ``GET /models`` shows to tell two files apart)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _subdirs(path: Path) -> list[Path]:
    try:
        with os.scandir(path) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []
