"""Groups: which clips were cut from one source video, and so must share a split.

UCF101 names its clips ``v_<Class>_g<group>_c<clip>``: the clips of one group
come from one long video, and a split that puts some in train and others in
test measures memory, not recognition. A group pattern is a regular expression
whose first capture group, searched for in a file's name (not its folders),
names the file's group; files whose captures are equal share a group.

``"auto"`` uses UCF101's ``_g(\\d+)_`` when every name matches it and groups
nothing otherwise; ``None`` groups nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import PurePosixPath

from model_export.data.folder import DataLayoutError, examples

log = logging.getLogger(__name__)

AUTO = "auto"
UCF101_PATTERN = r"_g(\d+)_"


def resolve_groups(
    paths: Sequence[str], pattern: str | None = AUTO
) -> tuple[str | None, tuple[str, ...]]:
    """``(pattern in use or None, group of each path)``; ``""`` for each when ungrouped.

    ``paths`` are ``/``-separated; only the last part, the file name, is matched.
    An explicit ``pattern`` that is not a regular expression with a capture group,
    or that some names do not match, is a :class:`DataLayoutError`.
    """
    ungrouped = (None, ("",) * len(paths))
    if pattern is None or not paths:
        return ungrouped
    if pattern == AUTO:
        groups, misses = _match(re.compile(UCF101_PATTERN), paths)
        if len(misses) == len(paths):
            return ungrouped  # a plain folder
        if misses:  # a stray file turns grouping off: a leak the user should hear of
            log.warning(
                "no clip groups: %d of %d file names lack UCF101's %s (e.g. %s), so the "
                "split may leak; rename or remove them to group the rest",
                len(misses),
                len(paths),
                UCF101_PATTERN,
                examples(misses, 3),
            )
            return ungrouped
        log.info("clip groups from UCF101's %s: %d groups", UCF101_PATTERN, len(set(groups)))
        return UCF101_PATTERN, groups
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise DataLayoutError(
            f"group pattern {pattern!r} is not a regular expression: {err}"
        ) from err
    if compiled.groups < 1:
        raise DataLayoutError(
            f"group pattern {pattern!r} has no capture group: wrap the part that names "
            "the group in parentheses, e.g. _g(\\d+)_"
        )
    groups, misses = _match(compiled, paths)
    if misses:
        raise DataLayoutError(
            f"group pattern {pattern!r} does not match {len(misses)} of {len(paths)} file "
            f"names: {examples(misses)} (give a pattern every name matches, or 'none')"
        )
    log.info("clip groups from %s: %d groups", pattern, len(set(groups)))
    return pattern, groups


def _match(pattern: re.Pattern[str], paths: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """The first capture of each path's name, and the paths whose names give none."""
    groups: list[str] = []
    misses: list[str] = []
    for path in paths:
        found = pattern.search(PurePosixPath(path).name)
        group = found.group(1) if found else None
        if not group:  # no match, or a capture that is empty or took no part
            misses.append(path)
        groups.append(group or "")
    return tuple(groups), misses
