"""A UCF101-style folder of short clips, for trying training at scale: ``python -m
model_export.data.ucf_like OUT``.

    OUT/<Class>/v_<Class>_g<GG>_c<CC>.avi      (MPEG-4 in AVI, as UCF101's XviD)
    OUT/../ucfTrainTestlist/classInd.txt, trainlist01.txt, testlist01.txt

Twenty classes by default: five shapes (``Disc``, ``Square``, ``Cross``,
``Ring``, ``Wedge``) times four motions (``Left``, ``Right``, ``Grow``,
``Shrink``), e.g. ``SquareShrink``; each motion's pair is its time reversal,
so order matters within a shape. As in UCF101, the clips of one *group* come
from one "scene": its backdrop, colours, size, speed and a drifting second
shape are drawn per group, so sibling clips look alike and differ in where
things start, how the distractor drifts, and the noise. A split that puts siblings on both
sides measures memory of scenes; the lists split by group, as UCF101's
(groups 1-7 test, the rest train). Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from model_export.data.synth.encode import Encoding, write_video

log = logging.getLogger(__name__)

SHAPES = ("Disc", "Square", "Cross", "Ring", "Wedge")
MOTIONS = ("Left", "Right", "Grow", "Shrink")
CLASSES = tuple(f"{shape}{motion}" for shape in SHAPES for motion in MOTIONS)
TEST_GROUPS = 7  # UCF101's split 1 tests on groups 1-7
SIZE = 80  # pixels a side
FPS = 12
FRAMES = 18  # 1.5 s
ENCODING = Encoding("mpeg4.avi", 4, (("qmax", "4"), ("qmin", "4")))

Pixels = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Clip:
    """One clip to render: its class, group and number within the group (from 1)."""

    label: str
    group: int
    clip: int
    seed: int

    @property
    def rel(self) -> str:
        return f"{self.label}/v_{self.label}_g{self.group:02d}_c{self.clip:02d}.avi"


def plan(classes: Sequence[str], groups: int, clips: int, seed: int) -> list[Clip]:
    """Every clip of the folder, in file order."""
    return [
        Clip(label, g, c, seed=seed * 1_000_003 + k * 10_007 + g * 101 + c)
        for k, label in enumerate(classes)
        for g in range(1, groups + 1)
        for c in range(1, clips + 1)
    ]


def render(clip: Clip) -> Pixels:
    """``(FRAMES, SIZE, SIZE, 3) uint8``: the clip's object moving over its group's scene,
    with the scene's distractor drifting about."""
    shape = next(s for s in SHAPES if clip.label.startswith(s))
    motion = clip.label[len(shape) :]
    scene = np.random.default_rng(hash_seed(clip.label, clip.group))
    own = np.random.default_rng(clip.seed)
    backdrop = _backdrop(scene)
    colours = scene.integers(0, 256, size=(3, 3)).astype(np.float64)
    radius = scene.uniform(8, 13)
    speed = scene.uniform(0.7, 1.1)
    other = SHAPES[int(scene.integers(len(SHAPES)))]
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    start = own.uniform(30, 50, size=2)
    drift_from, drift = own.uniform(10, 70, size=2), own.uniform(-1.5, 1.5, size=2)
    angle = own.uniform(0, 2 * np.pi)
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(FRAMES):
        progress = speed * t / (FRAMES - 1)
        cx, cy, r = start[0], start[1], radius
        if motion in ("Left", "Right"):
            cx += (16 - 32 * progress) if motion == "Left" else (-16 + 32 * progress)
        else:
            r = radius * ((0.6 + 0.7 * progress) if motion == "Grow" else (1.3 - 0.7 * progress))
        image = backdrop.copy()
        dx, dy = drift_from + drift * t
        u, v = _object_coords(xs - dx, ys - dy, angle, 7.0)
        image[_mask(other, u, v)] = colours[2]
        u, v = _object_coords(xs - cx, ys - cy, angle, r)
        inside = _mask(shape, u, v)
        image[inside] = np.where((u[inside] > 0)[:, None], colours[0], colours[1])
        image += own.normal(0, 6, size=image.shape)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def hash_seed(label: str, group: int) -> int:
    """A seed of a (class, group) scene, the same in every run."""
    return int.from_bytes(hashlib.sha256(f"{label}:{group}".encode()).digest()[:8], "little")


def _backdrop(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A gentle two-colour gradient with soft blobs: ``(SIZE, SIZE, 3)`` float 0-255."""
    a = rng.integers(40, 216, size=3).astype(np.float64)
    b = a + rng.uniform(-40, 40, size=3)
    direction = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    ramp = (np.cos(direction) * xs + np.sin(direction) * ys + 1) / 2
    image: npt.NDArray[np.float64] = a * (1 - ramp[..., None]) + b * ramp[..., None]
    for _ in range(int(rng.integers(2, 6))):
        centre, width = rng.uniform(0, 1, size=2), rng.uniform(0.05, 0.2)
        blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * width**2))
        image += blob[..., None] * rng.uniform(-30, 30, size=3)
    return image


def _object_coords(
    dx: npt.NDArray[np.float64], dy: npt.NDArray[np.float64], angle: float, radius: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pixel offsets from the centre -> the object's own coordinates, in radii."""
    c, s = np.cos(angle), np.sin(angle)
    return (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius


def _mask(
    shape: str, u: npt.NDArray[np.float64], v: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    d = np.hypot(u, v)
    if shape == "Disc":
        return d <= 1
    if shape == "Square":
        return np.maximum(abs(u), abs(v)) <= 0.8
    if shape == "Cross":
        return ((abs(u) <= 1) & (abs(v) <= 0.3)) | ((abs(v) <= 1) & (abs(u) <= 0.3))
    if shape == "Ring":
        return (d <= 1) & (d >= 0.55)
    return (d <= 1) & (np.arctan2(v, u) > -2.2) & (np.arctan2(v, u) < 2.2)  # Wedge


def _write(job: tuple[Path, Clip]) -> str:
    out, clip = job
    path = out / clip.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.avi")
    write_video(tmp, iter(render(clip)), encoding=ENCODING, width=SIZE, height=SIZE, fps=FPS)
    tmp.replace(path)
    return clip.rel


def write_lists(lists: Path, classes: Sequence[str], clips: Sequence[Clip]) -> None:
    """UCF101's ``classInd.txt``, ``trainlist01.txt`` (path and class id) and
    ``testlist01.txt`` (path only): groups 1-7 test, the rest train."""
    lists.mkdir(parents=True, exist_ok=True)
    ids = {label: i for i, label in enumerate(classes, start=1)}
    (lists / "classInd.txt").write_text("".join(f"{ids[c]} {c}\r\n" for c in classes))
    train = [f"{c.rel} {ids[c.label]}\r\n" for c in clips if c.group > TEST_GROUPS]
    test = [f"{c.rel}\r\n" for c in clips if c.group <= TEST_GROUPS]
    (lists / "trainlist01.txt").write_text("".join(train))
    (lists / "testlist01.txt").write_text("".join(test))


def generate(
    out: Path,
    *,
    classes: int = len(CLASSES),
    groups: int = 25,
    clips: int = 4,
    seed: int = 0,
    lists: Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> list[Clip]:
    """Render the folder (files already there are kept) and its split lists."""
    if not 1 <= classes <= len(CLASSES):
        raise ValueError(f"classes must be 1-{len(CLASSES)}")
    if groups <= TEST_GROUPS:
        raise ValueError(f"groups must be more than the {TEST_GROUPS} test groups")
    names = CLASSES[:classes]
    todo = plan(names, groups, clips, seed)
    missing = [c for c in todo if not (out / c.rel).is_file()]
    bar = tqdm(total=len(todo), initial=len(todo) - len(missing), desc="render", unit="video",
               disable=not progress)  # fmt: skip
    with bar:
        for _ in _run([(out, c) for c in missing], workers):
            bar.update()
    write_lists(lists or out.parent / "ucfTrainTestlist", names, todo)
    return todo


def _run(jobs: list[tuple[Path, Clip]], workers: int) -> Iterator[str]:
    if workers <= 1:
        yield from map(_write, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_write, jobs, chunksize=8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_export.data.ucf_like",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="the data folder to write (OUT/<Class>/...)")
    parser.add_argument("--classes", type=int, default=len(CLASSES))
    parser.add_argument("--groups", type=int, default=25, help="groups per class (UCF101: 25)")
    parser.add_argument("--clips", type=int, default=4, help="clips per group (UCF101: 4-7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lists", type=Path, help="default: OUT/../ucfTrainTestlist")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    done = generate(args.out, classes=args.classes, groups=args.groups, clips=args.clips,
                    seed=args.seed, lists=args.lists, workers=args.workers,
                    progress=not args.no_progress)  # fmt: skip
    log.info("%d clips in %s", len(done), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
