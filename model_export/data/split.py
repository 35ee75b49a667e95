"""Split: which videos train, validate and test, stratified by class and seeded."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from model_export.data.folder import SPLITS, VideoFile

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


def assign_splits(
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
