"""The synthetic data set: directions on screen, time-reversal symmetry, files, cache."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from model_export.data.synth import LABELS, Rendering, generate, render_video, sample_scene
from model_export.data.synth.cli import main
from model_export.data.synth.encode import CODECS
from model_export.data.synth.generate import split_counts
from model_export.data.synth.scene import AXES, Scene
from model_export.data.synth.sprite import SpriteSpec
from model_export.data.synth.track import Track

PAIRS = (
    ("move_right", "move_left"),
    ("move_down", "move_up"),
    ("zoom_in", "zoom_out"),
    ("rotate_cw", "rotate_ccw"),
)
FFMPEG_CODEC = {
    "libx264": "h264",
    "libvpx-vp9": "vp9",
    "libvpx": "vp8",
    "mpeg4": "mpeg4",
    "mjpeg": "mjpeg",
    "mpeg2video": "mpeg2video",
}


def _load(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def _decode(path: Path) -> npt.NDArray[np.uint8]:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    assert generate(out, seed=0, per_class=2, workers=2, progress=False) == out
    return out


# --- the label contract and the time-reversal symmetry --------------------------------


def test_labels_are_the_contract() -> None:
    assert LABELS == (
        "move_left",
        "move_right",
        "move_up",
        "move_down",
        "zoom_in",
        "zoom_out",
        "rotate_cw",
        "rotate_ccw",
    )
    assert {a for pair in PAIRS for a in pair} == set(LABELS)


@pytest.mark.parametrize(("forward", "backward"), PAIRS)
@pytest.mark.parametrize("style", ["default", "alt"])
def test_pair_is_the_same_scene_reversed(forward: str, backward: str, style: str) -> None:
    """A pair shares every draw; only the per-frame state runs the other way."""
    for seed in range(25):
        a, b = sample_scene(seed, forward, style), sample_scene(seed, backward, style)
        for field in dataclasses.fields(Scene):
            if field.name not in ("label", "track"):
                assert getattr(a, field.name) == getattr(b, field.name), field.name
        for field in dataclasses.fields(Track):
            np.testing.assert_array_equal(
                getattr(a.track, field.name)[::-1], getattr(b.track, field.name)
            )


@pytest.mark.parametrize(("forward", "backward"), PAIRS)
def test_pair_renders_the_same_frames_in_reverse(forward: str, backward: str) -> None:
    """So the set of frames (all that mean pooling sees) is identical within a pair."""
    a = render_video(sample_scene(3, forward)).frames
    b = render_video(sample_scene(3, backward)).frames
    np.testing.assert_array_equal(a[::-1], b)


def _ks(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


ORDER_FREE: dict[str, Callable[[Track], float]] = {
    "mean x": lambda t: float(t.x.mean()),
    "mean y": lambda t: float(t.y.mean()),
    "spread x": lambda t: float(t.x.max() - t.x.min()),
    "spread y": lambda t: float(t.y.max() - t.y.min()),
    "mean log size": lambda t: float(np.log(t.scale * t.view).mean()),
    "angle range": lambda t: float(np.ptp(t.angle + t.turn)),
    "pan range": lambda t: float(np.ptp(t.pan_x) + np.ptp(t.pan_y)),
}
ORDERED: dict[str, Callable[[Track], float]] = {
    "move_x": lambda t: float(t.x[-1] - t.pan_x[-1] - t.x[0] + t.pan_x[0]),
    "move_y": lambda t: float(t.y[-1] - t.pan_y[-1] - t.y[0] + t.pan_y[0]),
    "zoom": lambda t: float(np.log(t.scale[-1] * t.view[-1] / (t.scale[0] * t.view[0]))),
    "rotate": lambda t: float(t.angle[-1] + t.turn[-1] - t.angle[0] - t.turn[0]),
}


@pytest.mark.parametrize(("forward", "backward"), PAIRS)
def test_pair_differs_only_in_order_statistically(forward: str, backward: str) -> None:
    """Independent draws: order-free summaries match in distribution, the signed one does not."""
    n = 300
    a = [sample_scene(seed, forward).track for seed in range(n)]
    b = [sample_scene(seed, backward).track for seed in range(n, 2 * n)]
    critical = 1.95 * np.sqrt(2 / n)  # two-sample KS at alpha = 0.001
    for name, feature in ORDER_FREE.items():
        ks = _ks(np.array([feature(t) for t in a]), np.array([feature(t) for t in b]))
        assert ks < critical, f"{forward}/{backward} differ in {name} (KS {ks:.2f})"
    signed = ORDERED[AXES[forward][0]]
    assert min(signed(t) for t in a) > 0 > max(signed(t) for t in b)


# --- directions as seen on screen, measured on rendered frames ------------------------


def _seeds(label: str, count: int = 2) -> list[int]:
    """A few seeds; for zooms one object zoom and one whole-view zoom."""
    if not label.startswith("zoom"):
        return list(range(count))
    motions = {s: sample_scene(s, label).motion for s in range(40)}
    return [
        next(s for s, m in motions.items() if m == want) for want in ("zoom_object", "zoom_view")
    ]


def _with_marker(scene: Scene) -> Scene:
    if scene.sprite.marker is not None:
        return scene
    sprite = dataclasses.replace(scene.sprite, marker=(255, 0, 0))
    return dataclasses.replace(scene, sprite=sprite)


def _centroids(masks: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """``(N, H, W) bool -> (N, 2)`` x, y centroids in pixel-centre coordinates."""
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    area = masks.sum(axis=(1, 2))
    assert np.all(area > 0), "object left the picture"
    x = (masks * (xs + 0.5)).sum(axis=(1, 2)) / area
    y = (masks * (ys + 0.5)).sum(axis=(1, 2)) / area
    return np.stack([x, y], axis=1)


@pytest.mark.parametrize("label", [lab for lab in LABELS if lab.startswith("move")])
def test_move_direction_on_screen(label: str) -> None:
    for seed in _seeds(label):
        scene = sample_scene(seed, label)
        rendering = render_video(scene, masks=True)
        assert rendering.object_mask is not None
        centre = _centroids(rendering.object_mask)
        dx, dy = centre[-1] - centre[0]
        expected = {
            "move_left": (-1, 0),
            "move_right": (1, 0),
            "move_up": (0, -1),
            "move_down": (0, 1),
        }[label]
        along, across = (dx, dy) if expected[1] == 0 else (dy, dx)
        sign = expected[0] or expected[1]
        dimension = scene.width if expected[1] == 0 else scene.height
        assert sign * along > 0.15 * dimension, (label, seed, dx, dy)
        assert abs(along) > 2 * abs(across), (label, seed, dx, dy)


@pytest.mark.parametrize("label", ["zoom_in", "zoom_out"])
def test_zoom_direction_on_screen(label: str) -> None:
    for seed in _seeds(label):
        rendering = render_video(sample_scene(seed, label), masks=True)
        assert rendering.object_mask is not None
        area = rendering.object_mask.sum(axis=(1, 2)).astype(np.float64)
        growth = area[-1] / area[0]
        assert (growth > 2.0) if label == "zoom_in" else (growth < 0.5), (seed, growth)


def _unwrapped_marker_angle(rendering: Rendering) -> npt.NDArray[np.float64]:
    """Angle ``atan2(dy, dx)`` (image axes, y down) of the marker around the object centre."""
    assert rendering.marker_mask is not None
    d = _centroids(rendering.marker_mask) - rendering.centre
    return np.asarray(np.degrees(np.unwrap(np.arctan2(d[:, 1], d[:, 0]))), np.float64)


@pytest.mark.parametrize("label", ["rotate_cw", "rotate_ccw"])
def test_rotation_direction_on_screen(label: str) -> None:
    """Clockwise on screen: the marker's atan2(dy, dx) with y down increases."""
    for seed in [*_seeds(label), 2]:
        scene = _with_marker(sample_scene(seed, label))
        rendering = render_video(scene, masks=True)
        turn = _unwrapped_marker_angle(rendering)
        total = float(turn[-1] - turn[0])
        truth = float(rendering.angle[-1] - rendering.angle[0])
        assert (truth > 0) == (label == "rotate_cw")
        assert 45 - 5 <= abs(total) <= 200 + 5
        assert total == pytest.approx(truth, abs=8.0), (seed, total, truth)


def test_clockwise_from_pixels_alone() -> None:
    """A plain scene: white bar with a red marker on black, read back from RGB only.

    After a quarter turn clockwise, a marker that pointed right points down (y grows).
    """
    base = sample_scene(0, "rotate_cw")
    n = 10
    still = np.zeros(n)
    track = Track(
        x=np.full(n, 80.0),
        y=np.full(n, 60.0),
        scale=np.ones(n),
        angle=np.linspace(0.0, 90.0, n),
        view=np.ones(n),
        turn=still,
        pan_x=still,
        pan_y=still,
        shake_x=still,
        shake_y=still,
        gain=np.ones(n),
        noise_x=still,
        noise_y=still,
        jitter=np.zeros((n, 0, 2)),
    )
    sprite = SpriteSpec("rectangle", "solid", ((255, 255, 255), (255, 255, 255)), (255, 0, 0), 1)
    scene = dataclasses.replace(
        base,
        width=160,
        height=120,
        background="uniform",
        background_colours=((0, 0, 0), (0, 0, 0)),
        sprite=sprite,
        size=80.0,
        distractors=(),
        noise_sigma=0.0,
        track=track,
    )
    frames = render_video(scene).frames.astype(np.int16)
    red = (frames[..., 0] > 150) & (frames[..., 1] < 100) & (frames[..., 2] < 100)
    marker = _centroids(red)
    d = marker - np.array([80.0, 60.0])
    turn = np.degrees(np.unwrap(np.arctan2(d[:, 1], d[:, 0])))
    assert np.all(np.diff(turn) > 0)  # atan2 with y down grows: clockwise on screen
    assert turn[-1] - turn[0] == pytest.approx(90.0, abs=4.0)


def test_flicker_scales_brightness() -> None:
    scene = dataclasses.replace(sample_scene(4, "move_left"), noise_sigma=0.0)
    n = scene.num_frames
    plain = dataclasses.replace(scene, track=dataclasses.replace(scene.track, gain=np.ones(n)))
    bright = dataclasses.replace(
        scene, track=dataclasses.replace(scene.track, gain=np.full(n, 1.2))
    )
    expected = np.clip(render_video(plain).frames[:3] * 1.2, 0, 255)
    got = render_video(bright).frames[:3].astype(np.float64)
    assert np.abs(got - expected).max() <= 1.0


# --- the data set on disk -------------------------------------------------------------


def test_layout_names_and_splits(dataset: Path) -> None:
    manifest = _load(dataset)
    assert manifest["seed"] == 0 and manifest["style"] == "default"
    assert manifest["labels"] == list(LABELS)
    videos = manifest["videos"]
    assert len(videos) == 2 * len(LABELS)
    train, val, test = split_counts(2, (0.7, 0.15, 0.15))
    for label in LABELS:
        splits = sorted(v["split"] for v in videos if v["label"] == label)
        assert splits == sorted(["train"] * train + ["val"] * val + ["test"] * test)
    on_disk = sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*.*"))
    assert on_disk == sorted([v["path"] for v in videos] + ["manifest.json"])
    for v in videos:
        split, label, name = v["path"].split("/")
        assert (split, label) == (v["split"], v["label"])
        assert re.fullmatch(r"\d{6}\.(mp4|webm|avi|mkv|ts)", name)


def test_files_decode_with_the_requested_format(dataset: Path) -> None:
    videos = _load(dataset)["videos"]
    assert len({v["format"] for v in videos}) >= 3
    for v in videos:
        frames = _decode(dataset / v["path"])
        assert frames.shape == (v["num_frames"], v["height"], v["width"], 3), v["path"]
        with av.open(str(dataset / v["path"])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == FFMPEG_CODEC[v["codec"]]
            assert stream.average_rate == v["fps"]
            assert v["container"] in container.format.name.split(",")


def test_alt_style_uses_other_formats(tmp_path: Path) -> None:
    generate(tmp_path, seed=1, per_class=1, style="alt", workers=1, progress=False)
    videos = _load(tmp_path)["videos"]
    default_formats = {"h264.mp4", "vp9.webm", "mpeg4.avi", "mjpeg.avi"}
    assert not {v["format"] for v in videos} & default_formats
    for v in videos:
        assert v["format"] in CODECS
        frames = _decode(tmp_path / v["path"])
        assert frames.shape == (v["num_frames"], v["height"], v["width"], 3)


def test_same_seed_same_data_set(dataset: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", seed=0, per_class=2, workers=1, progress=False)
    assert _load(again) == _load(dataset)
    first = _load(dataset)["videos"][0]["path"]
    np.testing.assert_array_equal(_decode(dataset / first), _decode(again / first))
    assert (dataset / first).read_bytes() == (again / first).read_bytes()


def test_cache_and_a_different_seed(tmp_path: Path) -> None:
    out = tmp_path / "data"
    generate(out, seed=0, per_class=1, workers=1, progress=False)
    seed0 = _load(out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    # Same settings through the CLI: nothing is rewritten.
    assert main(["--out", str(out), "--per-class", "1", "--workers", "1", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before

    generate(out, seed=1, per_class=1, workers=1, progress=False)
    seed1 = _load(out)
    assert seed1["seed"] == 1
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.*")}
    assert on_disk == {v["path"] for v in seed1["videos"]} | {"manifest.json"}
    assert not {v["sha256"] for v in seed0["videos"]} & {v["sha256"] for v in seed1["videos"]}
    assert [v["width"] for v in seed0["videos"]] != [v["width"] for v in seed1["videos"]]
