"""Workloads: the benchmark's videos, generated deterministically and cached.

- ``w1`` "UCF101-like": 200 clips, 320x240, 25 fps, 4-10 s; half with x264's
  default keyframe interval (250), half with a short one (12, as camera and
  XviD files have). The first two clips last exactly 10 s (one of each kind):
  they are the short reference of the length-scaling figure.
- ``w2`` "HD": 20 clips, 1280x720, 30 fps, 30-60 s (keyframe every 250 / 30).
- ``w3`` "long": 2 videos, 640x360, 25 fps, 10 minutes (keyframe every 250 / 50).
- ``tiny``: 40 clips, 64x64 MJPEG, 16 frames: decoding costs almost nothing, so
  requests/s measure the HTTP front (the ingress ceiling), not the decoders.

Encoding is x264 at the ultrafast preset (so generation stays bounded on two
cores) with B-frames, CABAC and the deblocking filter turned back on, as in
camera and web files: the decoder then does the work it does on real uploads
and the options that skip part of it have something to skip. ``--quick``
keeps the geometry and codec but few, shorter videos. Files are cached under
``bench/cache/<workload>/`` by a hash of their spec; a changed spec makes new ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.video
import numpy as np
from tqdm import tqdm

from bench.content import yuv_frames

log = logging.getLogger(__name__)

CONTENT_VERSION = 1  # bump when bench.content draws differently
X264_PARAMS = "bframes=2:b-adapt=0:cabac=1:deblock=1:scenecut=0"
CRF = 23
NAMES = ("w1", "w2", "w3", "tiny")
X264 = "libx264"


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """One video to generate: geometry, rate, length, keyframe interval and seed."""

    name: str
    width: int
    height: int
    fps: int
    seconds: float
    gop: int
    seed: int
    codec: str = X264

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    @property
    def key(self) -> str:
        doc = {**asdict(self), "x264": X264_PARAMS, "crf": CRF, "content": CONTENT_VERSION}
        if self.codec == X264:
            del doc["codec"]  # the keys of the x264 workloads' cached files stay as they were
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]

    def path(self, cache: Path, workload: str) -> Path:
        suffix = ".mp4" if self.codec == X264 else ".avi"
        return cache / workload / f"{self.name}-{self.key}{suffix}"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    title: str
    clips: tuple[ClipSpec, ...]
    paths: tuple[Path, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(c.seconds for c in self.clips)


def spec(name: str, *, quick: bool = False) -> Workload:
    """The clips of workload ``name`` (``w1``, ``w2`` or ``w3``)."""
    rng = np.random.default_rng({"w1": 1, "w2": 2, "w3": 3, "tiny": 4}[name])
    if name == "w1":
        count = 8 if quick else 200
        seconds = [10.0, 10.0, *np.round(rng.uniform(4, 10, count - 2), 1).tolist()]
        clips = [
            ClipSpec(f"w1-{i:03d}", 320, 240, 25, float(s), (250, 12)[i % 2], 1000 + i)
            for i, s in enumerate(seconds)
        ]
        return Workload(name, "UCF101-like 320x240", tuple(clips))
    if name == "w2":
        count = 2 if quick else 20
        low, high = (4, 6) if quick else (30, 60)
        seconds = np.round(rng.uniform(low, high, count), 1).tolist()
        clips = [
            ClipSpec(f"w2-{i:02d}", 1280, 720, 30, float(s), (250, 30)[i % 2], 2000 + i)
            for i, s in enumerate(seconds)
        ]
        return Workload(name, "HD 1280x720", tuple(clips))
    if name == "w3":
        seconds_each = 60.0 if quick else 600.0
        count = 1 if quick else 2
        clips = [
            ClipSpec(f"w3-{i}", 640, 360, 25, seconds_each, (250, 50)[i % 2], 3000 + i)
            for i in range(count)
        ]
        return Workload(name, "long 640x360", tuple(clips))
    if name == "tiny":
        clips = [
            ClipSpec(f"tiny-{i:02d}", 64, 64, 16, 1.0, 1, 4000 + i, "mjpeg") for i in range(40)
        ]
        return Workload(name, "tiny 64x64 MJPEG", tuple(clips))
    raise ValueError(f"unknown workload {name!r}; expected one of {NAMES}")


def ensure(workloads: Sequence[Workload], cache: Path, *, workers: int) -> list[Workload]:
    """Generate whatever is not cached yet; returns the workloads with their paths."""
    todo = [
        (c, c.path(cache, w.name))
        for w in workloads
        for c in w.clips
        if not c.path(cache, w.name).exists()
    ]
    if todo:
        # Longest first: the pool then finishes together.
        todo.sort(key=lambda item: -item[0].frames * item[0].width * item[0].height)
        frames = sum(c.frames for c, _ in todo)
        log.info("generating %d videos (%d frames) into %s", len(todo), frames, cache)
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(workers, mp_context=context) as pool,
            tqdm(total=frames, unit="frame", desc="workloads") as bar,
        ):
            futures = {pool.submit(write_clip, c, p): c for c, p in todo}
            for future in as_completed(futures):
                future.result()
                bar.update(futures[future].frames)
    return [
        Workload(w.name, w.title, w.clips, tuple(c.path(cache, w.name) for c in w.clips))
        for w in workloads
    ]


def write_clip(clip: ClipSpec, path: Path) -> Path:
    """Render and encode ``clip`` to ``path`` (atomically: a partial file never stays)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    rate = Fraction(clip.fps)
    x264 = clip.codec == X264
    with av.open(str(partial), "w", format="mp4" if x264 else "avi") as container:
        stream = container.add_stream(clip.codec, rate=rate)
        assert isinstance(stream, av.video.VideoStream)
        stream.width, stream.height = clip.width, clip.height
        stream.pix_fmt = "yuv420p" if x264 else "yuvj420p"
        if x264:
            params = f"{X264_PARAMS}:keyint={clip.gop}:min-keyint={clip.gop}"
            stream.options = {"preset": "ultrafast", "crf": str(CRF), "x264-params": params}
        stream.codec_context.thread_count = 1  # the same bytes on every machine
        frames = yuv_frames(
            seed=clip.seed, height=clip.height, width=clip.width, count=clip.frames, fps=clip.fps
        )
        for i, planes in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts, frame.time_base = i, 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    partial.replace(path)
    return path
