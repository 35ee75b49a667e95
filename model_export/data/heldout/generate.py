"""Generate: the held-out test set on disk (plan, worker pool, manifest, reuse).

Layout: ``out/test/<label>/<NNNNNN>.<ext>`` plus ``out/manifest.json``. File
numbers are a seeded permutation, so a name says nothing about its label. The
manifest is written last (atomically) and doubles as the cache key: a folder
whose manifest names the same generator version, seed and count, with every
file present at its recorded size, is reused as it is.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model_export.data.heldout.encode import CODECS, write_video
from model_export.data.heldout.labels import LABELS
from model_export.data.heldout.render import render_frames
from model_export.data.heldout.scene import sample_scene

log = logging.getLogger(__name__)

GENERATOR = "heldout"
VERSION = 1  # bump whenever a seed would render differently: old folders are redone
SPLIT = "test"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One video to make: its label, the seed of its scene and its file number."""

    label: str
    seed: int
    number: int
    tiny: bool = False


def plan(*, seed: int, per_class: int, tiny: bool = False) -> list[Job]:
    """All jobs, label by label; a pure function of its arguments."""
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    numbers = np.random.default_rng([seed, 0x5EED]).permutation(len(LABELS) * per_class)
    jobs = []
    for li, label in enumerate(LABELS):
        for k in range(per_class):
            scene_seed = int(np.random.SeedSequence([seed, li, k]).generate_state(1)[0])
            number = int(numbers[li * per_class + k])
            jobs.append(Job(label=label, seed=scene_seed, number=number, tiny=tiny))
    return jobs


def make_video(out: Path, job: Job) -> dict[str, Any]:
    """Render and encode one job's video under ``out``; returns its manifest entry."""
    scene = sample_scene(job.label, job.seed, tiny=job.tiny)
    codec = CODECS[scene.codec]
    rel = f"{SPLIT}/{job.label}/{job.number:06d}{codec.suffix}"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = write_video(
        path,
        render_frames(scene),
        key=scene.codec,
        width=scene.width,
        height=scene.height,
        fps=scene.fps,
        options=scene.options,
    )
    return {
        "path": rel,
        "label": job.label,
        "codec": codec.codec,
        "container": codec.muxer,
        "width": scene.width,
        "height": scene.height,
        "fps": float(scene.fps),
        "fps_exact": str(scene.fps),
        "frames": frames,
        "duration_s": round(frames / float(scene.fps), 6),
        "bytes": path.stat().st_size,
        "seed": job.seed,
        **scene.summary(),
    }


def _config(seed: int, per_class: int, tiny: bool) -> dict[str, Any]:
    """The manifest's keys that must match for a folder to be reused."""
    return {
        "generator": GENERATOR,
        "version": VERSION,
        "labels": list(LABELS),
        "seed": seed,
        "per_class": per_class,
        "tiny": tiny,
    }


def is_current(out: Path, *, seed: int, per_class: int, tiny: bool = False) -> bool:
    """Whether ``out`` already holds this configuration's videos, all of them."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    config = _config(seed, per_class, tiny)
    if any(manifest.get(k) != v for k, v in config.items()):
        return False
    files = manifest.get("files")
    if not isinstance(files, list) or len(files) != len(LABELS) * per_class:
        return False
    try:
        return all(
            (out / e["path"]).is_file() and (out / e["path"]).stat().st_size == e["bytes"]
            for e in files
        )
    except (KeyError, TypeError):
        return False


def _clear(out: Path) -> None:
    """Remove an older held-out set from ``out``; refuse to touch anything else."""
    manifest = out / "manifest.json"
    ours = False
    if manifest.is_file():
        try:
            ours = json.loads(manifest.read_text()).get("generator") == GENERATOR
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            raise FileExistsError(f"{manifest} was written by another generator")
    split = out / SPLIT
    if split.exists() and any(split.iterdir()) and not ours:
        raise FileExistsError(f"{split} holds files that this generator did not write")
    shutil.rmtree(split, ignore_errors=True)
    manifest.unlink(missing_ok=True)


def _run(out: Path, jobs: list[Job], workers: int) -> Iterator[dict[str, Any]]:
    """Manifest entries of ``jobs`` as they finish (in-process for one worker)."""
    if workers <= 1:
        for job in jobs:
            yield make_video(out, job)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(make_video, out, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def generate(
    out: Path,
    *,
    seed: int,
    per_class: int,
    workers: int = 2,
    progress: bool = True,
    tiny: bool = False,
) -> Path:
    """Write the held-out set under ``out`` and return ``out``.

    Deterministic for a seed (the same bytes every time, with any number of
    workers). Does nothing when the manifest already describes this
    configuration with all its files. ``tiny``: small, short videos (tests).
    """
    out = Path(out)
    if is_current(out, seed=seed, per_class=per_class, tiny=tiny):
        log.info("held-out set in %s is current (seed %d, %d per class)", out, seed, per_class)
        return out
    _clear(out)
    jobs = plan(seed=seed, per_class=per_class, tiny=tiny)
    # Largest first, so the last video a worker takes is a short one.
    cost = {job: _cost(job) for job in jobs}
    jobs.sort(key=lambda job: -cost[job])
    log.info("rendering %d held-out videos into %s with %d workers", len(jobs), out, workers)
    entries = []
    with tqdm(total=len(jobs), desc="heldout", unit="video", disable=not progress) as bar:
        for entry in _run(out, jobs, workers):
            entries.append(entry)
            bar.update(1)
    entries.sort(key=lambda e: str(e["path"]))
    manifest = {**_config(seed, per_class, tiny), "files": entries}
    tmp = out / ".manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(out / "manifest.json")
    return out


def _cost(job: Job) -> int:
    """Pixels times frames of a job's video: how long it takes, roughly."""
    scene = sample_scene(job.label, job.seed, tiny=job.tiny)
    return scene.width * scene.height * scene.frames
