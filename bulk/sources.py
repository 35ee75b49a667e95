"""Sources: what ``SRC...`` names, as the sorted list of files to classify.

- a file: taken as it is, whatever its name;
- a folder: every file below it with a video extension (``VIDEO_SUFFIXES``);
- a list (``.txt``, ``.lst``, ``.list``): one path per line, ``#`` comments and
  blank lines skipped, relative paths taken from the list's own folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

VIDEO_SUFFIXES = frozenset(
    {".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4"}
    | {".mpeg", ".mpg", ".mts", ".mxf", ".ogv", ".ts", ".webm", ".wmv"}
)
LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})


class SourceError(ValueError):
    """A source that names nothing readable: the job cannot run."""


def expand(sources: Iterable[str | Path]) -> list[Path]:
    """Every file the sources name, absolute (symlinks kept), sorted, each once."""
    found: set[Path] = set()
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found.update(_videos_below(path))
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            found.update(_listed(path))
        elif path.exists():
            found.add(_absolute(path))
        else:
            raise SourceError(f"{source}: no such file or folder")
    return sorted(found)


def _videos_below(folder: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                yield _absolute(Path(root) / name)


def _listed(listing: Path) -> Iterable[Path]:
    try:
        lines = listing.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"{listing}: cannot read the list ({err})") from err
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            path = Path(entry)
            yield _absolute(path if path.is_absolute() else listing.parent / path)


def _absolute(path: Path) -> Path:
    """Absolute and normalised, symlinks kept: the path the table names."""
    return Path(os.path.normpath(path.absolute()))
