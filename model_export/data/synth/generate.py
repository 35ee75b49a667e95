"""Generate: the data-set driver (splits, file names, worker pool, manifest, cache).

Layout: ``out/{train,val,test}/<label>/<NNNNNN>.<ext>`` plus ``out/manifest.json``.
File numbers are a seeded permutation, so a name says nothing about its label.
The manifest is written last (atomically) and doubles as the cache key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model_export.data.synth.encode import write_video
from model_export.data.synth.render import iter_frames
from model_export.data.synth.scene import LABELS, sample_scene
from model_export.data.synth.style import STYLES, get_style

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, slots=True)
class Job:
    """One video to make: where, which label, and the seed of its scene."""

    number: int
    split: str
    label: str
    seed: int
    style: str


def split_counts(per_class: int, split: tuple[float, float, float]) -> tuple[int, int, int]:
    """Videos per class in train, val and test (test takes the rounding remainder)."""
    if len(split) != 3 or min(split) < 0 or not np.isclose(sum(split), 1.0):
        raise ValueError(f"split must be three non-negative fractions summing to 1, got {split}")
    train = round(per_class * split[0])
    val = min(round(per_class * split[1]), per_class - train)
    return train, val, per_class - train - val


def plan(seed: int, per_class: int, split: tuple[float, float, float], style: str) -> list[Job]:
    """All jobs of a data set, in a fixed order; a pure function of its arguments."""
    style_id = sorted(STYLES).index(style)
    counts = split_counts(per_class, split)
    numbers = np.random.default_rng([seed, style_id, 7919]).permutation(len(LABELS) * per_class)
    jobs: list[Job] = []
    for label_id, label in enumerate(LABELS):
        names = iter(SPLITS[i] for i, count in enumerate(counts) for _ in range(count))
        for k, split_name in enumerate(names):
            video_seed = np.random.SeedSequence([seed, style_id, label_id, k]).generate_state(1)[0]
            number = int(numbers[len(jobs)])
            jobs.append(Job(number, split_name, label, int(video_seed), style))
    return jobs


def make_video(out: Path, job: Job) -> dict[str, Any]:
    """Render and encode one job's video; returns its manifest entry."""
    scene = sample_scene(job.seed, job.label, job.style)
    rel = Path(job.split) / job.label / f"{job.number:06d}{scene.encoding.spec.suffix}"
    path = out / rel
    tmp = path.with_name(f".{path.name}.part")
    write_video(
        tmp,
        iter_frames(scene),
        encoding=scene.encoding,
        width=scene.width,
        height=scene.height,
        fps=scene.fps,
    )
    data = tmp.read_bytes()
    tmp.replace(path)
    entry: dict[str, Any] = {"path": rel.as_posix(), "split": job.split, "seed": job.seed}
    entry |= scene.summary()
    entry["bytes"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    return entry


def _make_video_star(args: tuple[Path, Job]) -> dict[str, Any]:
    return make_video(*args)


def _config(
    seed: int, style: str, per_class: int, split: tuple[float, float, float]
) -> dict[str, Any]:
    return {
        "version": MANIFEST_VERSION,
        "seed": seed,
        "style": style,
        "per_class": per_class,
        "split": [float(f) for f in split],
    }


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest


def _is_current(manifest: dict[str, Any] | None, config: dict[str, Any], out: Path) -> bool:
    if manifest is None or any(manifest.get(k) != v for k, v in config.items()):
        return False
    return all((out / v["path"]).is_file() for v in manifest.get("videos", []))


def _run(out: Path, jobs: list[Job], workers: int) -> Iterator[dict[str, Any]]:
    tasks = [(out, job) for job in jobs]
    if workers <= 1:
        yield from map(_make_video_star, tasks)
        return
    # spawn: safe in a parent with threads (torch, pytest), and the same on every OS.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_make_video_star, tasks, chunksize=2)


def generate(
    out: Path,
    *,
    seed: int = 0,
    per_class: int = 150,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    style: str = "default",
    workers: int = 2,
    progress: bool = True,
) -> Path:
    """Write the synthetic data set under ``out`` and return ``out``.

    Deterministic for a seed. Does nothing when ``out/manifest.json`` already
    describes the same seed, style, per-class count and split, with all its files.
    """
    get_style(style)
    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    out = Path(out)
    config = _config(seed, style, per_class, split)
    old = _read_manifest(out)
    if _is_current(old, config, out):
        logger.info("synthetic data set in %s is up to date (seed %d, %s)", out, seed, style)
        return out
    if old is not None:  # a different data set: remove its files, never anything else
        (out / MANIFEST).unlink()
        for video in old.get("videos", []):
            (out / video["path"]).unlink(missing_ok=True)
    jobs = plan(seed, per_class, split, style)
    for job in jobs:
        (out / job.split / job.label).mkdir(parents=True, exist_ok=True)
    logger.info("rendering %d videos into %s with %d workers", len(jobs), out, workers)
    bar = tqdm(_run(out, jobs, workers), total=len(jobs), disable=not progress, unit="video")
    videos = sorted(bar, key=lambda v: str(v["path"]))
    manifest = config | {"labels": list(LABELS), "videos": videos}
    tmp = out / f".{MANIFEST}.part"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / MANIFEST)
    return out
