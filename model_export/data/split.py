"""Split: which videos train, validate and test, stratified by class and seeded.

When clips are grouped (:mod:`~model_export.data.groups`), whole groups are
split, so no source video is seen in training and again in test.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model_export.data.folder import EXPECTED_LAYOUT, SPLITS, DataLayoutError, VideoFile, examples

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)

Indices = npt.NDArray[np.int64]


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


def grouped_split(
    targets: npt.NDArray[np.int64],
    groups: Sequence[str],
    *,
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[Indices]:
    """:func:`stratified_split` of whole groups: each group's items land in one split.

    ``targets`` and ``groups`` are ``(N,)``, one per item. Groups are stratified by
    their majority class; groups where no class has a majority share one stratum
    (UCF101's group numbers, seen across class folders, are such). Fractions count
    groups, and every split after the first gets at least one group of each stratum
    that has enough groups. Returns one sorted ``(n_i,) int64`` array per fraction.
    """
    names, group_of = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    strata = group_strata(targets, group_of.astype(np.int64), len(names))
    parts = stratified_split(strata, fractions=fractions, seed=seed)
    return [np.flatnonzero(np.isin(group_of, p)).astype(np.int64) for p in parts]


def group_strata(
    targets: npt.NDArray[np.int64], group_of: npt.NDArray[np.int64], n_groups: int
) -> npt.NDArray[np.int64]:
    """``(n_groups,) int64``: each group's majority class, or -1 where none has a majority."""
    n_classes = int(targets.max()) + 1 if len(targets) else 0
    counts = np.zeros((n_groups, n_classes), dtype=np.int64)
    np.add.at(counts, (group_of, targets), 1)
    major = counts.argmax(axis=1) if n_classes else np.zeros(n_groups, dtype=np.int64)
    share = counts.max(axis=1, initial=0) / np.maximum(counts.sum(axis=1), 1)
    return np.where(share > 0.5, major, -1).astype(np.int64)


def assign_splits(
    files: Sequence[VideoFile],
    kept: Indices,
    targets: npt.NDArray[np.int64],
    *,
    seed: int,
    fractions: tuple[float, float, float],
    groups: Sequence[str] = (),
) -> dict[str, Indices]:
    """``train``/``val``/``test`` -> sorted indices into ``files``, of the ``kept`` ones.

    Files without a given split are split by :func:`stratified_split`, or by
    :func:`grouped_split` when ``groups`` (one per file) names any. Given splits
    are kept, and a missing val or test is carved out of train the same way.
    """
    grouped = any(groups)

    def split(pool: Indices, fracs: tuple[float, ...]) -> list[Indices]:
        if grouped:
            pool_groups = [groups[i] for i in pool]
            return grouped_split(targets[pool], pool_groups, fractions=fracs, seed=seed)
        return stratified_split(targets[pool], fractions=fracs, seed=seed)

    given = {s: kept[[files[i].split == s for i in kept]] for s in SPLITS}
    if not any(len(v) for v in given.values()):
        train, val, test = (kept[p] for p in split(kept, fractions))
        given = {"train": train, "val": val, "test": test}
        if grouped:
            _warn_on_missing_classes(given, targets)
        return given
    # Given splits: carve whatever is missing out of train, in proportion.
    for name, frac in zip(SPLITS[1:], fractions[1:], strict=True):
        if len(given[name]) == 0 and len(given["train"]) > 0 and frac > 0:
            pool = given["train"]
            share = frac / (fractions[0] + frac)
            rest, carved = split(pool, (1 - share, share))
            given["train"], given[name] = pool[rest], pool[carved]
            log.info("no %s split given: took %d videos from train", name, len(carved))
    if grouped:
        _warn_on_leaks(given, groups)
        _warn_on_missing_classes(given, targets)
    return given


def require_enough(
    labels: Sequence[str],
    targets: npt.NDArray[np.int64],
    groups: Sequence[str],
    *,
    need: int,
    empty: Sequence[str] = (),
) -> None:
    """Raise :class:`DataLayoutError` naming every label with fewer than ``need`` items,
    or distinct groups when ``groups`` names any.

    ``targets`` ``(n,) int64`` and ``groups`` (empty, or ``n`` names) are the usable
    items'; ``empty`` are label folders that hold no file at all.
    """
    grouped = any(groups)
    short: list[str] = []
    for cls, label in enumerate(labels):
        members = np.flatnonzero(targets == cls)
        count = len({groups[int(i)] for i in members}) if grouped else len(members)
        if count < need:
            short.append(f"{label!r} has {count}")
    short += [f"{label!r} has 0" for label in empty if label not in labels]
    if short:
        what = "groups of clips" if grouped else "usable videos"
        raise DataLayoutError(
            f"too few {what} to split every label {need} ways: {examples(short)} "
            f"(each needs {need}); add videos, remove the label folder, or give the "
            f"splits: {EXPECTED_LAYOUT}"
        )


def _warn_on_leaks(splits: dict[str, Indices], groups: Sequence[str]) -> None:
    where: dict[str, set[str]] = {}
    for name, idx in splits.items():
        for i in idx:
            where.setdefault(groups[i], set()).add(name)
    leaks = sorted(g for g, names in where.items() if len(names) > 1)
    if leaks:
        log.warning(
            "%d clip groups are in more than one split (the given splits leak): %s",
            len(leaks),
            examples(leaks),
        )


def _warn_on_missing_classes(splits: dict[str, Indices], targets: npt.NDArray[np.int64]) -> None:
    used = np.concatenate(list(splits.values()))
    for name, idx in splits.items():
        missing = np.setdiff1d(np.unique(targets[used]), targets[idx])
        if len(idx) and len(missing):
            log.warning("the %s split has no clips of classes %s", name, missing.tolist())
