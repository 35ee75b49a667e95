"""The held-out renderer: files, determinism, decoding, motion on screen, independence.

Motion is measured on the pixels of clean renders (the object of interest alone,
on black), not read from the renderer's own trajectories: the mask's centroid
travels, its area grows or shrinks, and the best rigid turn between sampled
frames is clockwise or counter-clockwise with y pointing down.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from model_export.data.dataset import load_dataset
from model_export.data.heldout import LABELS, generate, render_frames, sample_scene
from model_export.data.heldout.choreography import MODES
from model_export.data.heldout.cli import main
from model_export.data.heldout.encode import CODECS, write_video
from model_export.data.heldout.labels import motion_of
from model_export.data.synth import LABELS as SYNTH_LABELS
from service.media.clip import decode_clip

PACKAGE = Path(__file__).resolve().parents[3] / "model_export" / "data" / "heldout"
PER_CLASS = 2
SEED = 7
# What FFmpeg's decoders call each codec (the manifest uses codec ids).
DECODER = {"flv1": "flv", "av1": "libdav1d"}
Frames = list[npt.NDArray[np.uint8]]


def _manifest(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def _digests(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heldout") / "data"
    assert (
        generate(out, seed=SEED, per_class=PER_CLASS, workers=1, progress=False, tiny=True) == out
    )
    return out


# --- files, manifest, determinism, reuse -------------------------------------------------


def test_labels_are_the_training_labels_in_order() -> None:
    assert LABELS == SYNTH_LABELS


def test_layout_and_manifest(dataset: Path) -> None:
    manifest = _manifest(dataset)
    assert manifest["generator"] == "heldout"
    assert manifest["labels"] == list(LABELS)
    assert (manifest["seed"], manifest["per_class"]) == (SEED, PER_CLASS)
    files = manifest["files"]
    assert len(files) == len(LABELS) * PER_CLASS
    numbers = []
    for entry in files:
        assert {
            "path",
            "label",
            "codec",
            "container",
            "width",
            "height",
            "fps",
            "duration_s",
        } <= set(entry)
        match = re.fullmatch(r"test/([a-z_]+)/(\d{6})\.(\w+)", entry["path"])
        assert match is not None, entry["path"]
        assert match.group(1) == entry["label"]
        numbers.append(int(match.group(2)))
        path = dataset / entry["path"]
        assert path.stat().st_size == entry["bytes"]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (
                entry["width"],
                entry["height"],
            )
            assert stream.codec_context.name == DECODER.get(entry["codec"], entry["codec"])
            assert entry["container"] in container.format.name.split(",")
        assert entry["duration_s"] == pytest.approx(entry["frames"] / entry["fps"], abs=1e-4)
    assert sorted(numbers) == list(range(len(files)))  # a permutation: names hide labels
    assert sorted(e["label"] for e in files) == sorted(LABELS * PER_CLASS)
    on_disk = {p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file()}
    assert on_disk == {e["path"] for e in files} | {"manifest.json"}


def test_same_seed_gives_the_same_bytes_with_any_workers(dataset: Path, tmp_path: Path) -> None:
    again = generate(
        tmp_path / "again", seed=SEED, per_class=PER_CLASS, workers=2, progress=False, tiny=True
    )
    assert _digests(again) == _digests(dataset)


def test_current_folder_is_reused_and_a_missing_file_remade(dataset: Path, tmp_path: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in dataset.rglob("*") if p.is_file()}
    generate(dataset, seed=SEED, per_class=PER_CLASS, workers=1, progress=False, tiny=True)
    assert {p: p.stat().st_mtime_ns for p in dataset.rglob("*") if p.is_file()} == before

    copy = tmp_path / "copy"
    generate(copy, seed=SEED, per_class=1, workers=1, progress=False, tiny=True)
    victim = copy / _manifest(copy)["files"][0]["path"]
    digests = _digests(copy)
    victim.unlink()
    generate(copy, seed=SEED, per_class=1, workers=1, progress=False, tiny=True)
    assert _digests(copy) == digests


def test_refuses_to_clear_a_folder_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "test" / "cats"
    foreign.mkdir(parents=True)
    (foreign / "a.mp4").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        generate(tmp_path, seed=0, per_class=1, workers=1, progress=False, tiny=True)
    assert (foreign / "a.mp4").read_bytes() == b"not ours"

    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"generator": "synth", "files": []}))
    with pytest.raises(FileExistsError):
        generate(other, seed=0, per_class=1, workers=1, progress=False, tiny=True)
    assert json.loads((other / "manifest.json").read_text())["generator"] == "synth"


def test_cli_writes_then_reuses(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "cli"), "--per-class", "1", "--seed", "3", "--workers", "1"]
    assert main([*args, "--no-progress", "--tiny"]) == 0
    first = _digests(tmp_path / "cli")
    assert main([*args, "--no-progress", "--tiny"]) == 0
    assert _digests(tmp_path / "cli") == first
    assert _manifest(tmp_path / "cli")["per_class"] == 1


# --- decoding through the project's own paths ---------------------------------------------


def test_every_file_decodes_through_the_serving_path(dataset: Path) -> None:
    for entry in _manifest(dataset)["files"]:
        clip = decode_clip(dataset / entry["path"], num_frames=16, height=48, width=64)
        assert clip.frames.shape == (16, 48, 64, 3)
        assert clip.info.num_frames == entry["frames"]
        assert clip.frames.std() > 1.0  # a picture, not a blank


def test_the_folder_loads_as_a_test_split(dataset: Path, tmp_path: Path) -> None:
    ds = load_dataset(
        dataset,
        num_frames=16,
        height=64,
        width=64,
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
    )
    assert ds.labels == LABELS
    assert ds.skipped == ()
    clips, targets = ds.split("test", serving=True)
    assert clips.shape == (len(LABELS) * PER_CLASS, 16, 64, 64, 3)
    labels = [LABELS[t] for t in targets]
    assert labels == [ds.files[i].split("/")[1] for i in ds.splits["test"]]


@pytest.mark.parametrize("key", sorted(CODECS))
def test_every_codec_writes_deterministic_decodable_files(key: str, tmp_path: Path) -> None:
    codec = CODECS[key]
    width, height = codec.fit_size(67, 45)  # odd where the codec allows it
    fps = Fraction(30000, 1001) if codec.allows_rate(Fraction(30000, 1001)) else Fraction(25)
    scene = sample_scene("rotate_cw", 1, size=(80, 60), frames=16)
    frames = [np.ascontiguousarray(f[:height, :width]) for f in render_frames(scene)]
    digests = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}{codec.suffix}"
        n = write_video(path, frames, key=key, width=width, height=height, fps=fps, options=())
        assert n == 16
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    clip = decode_clip(path, num_frames=8, height=32, width=32)
    assert clip.info.codec == DECODER.get(codec.codec, codec.codec)
    assert (clip.info.width, clip.info.height) == (width, height)
    assert clip.info.num_frames == 16
    assert not list(tmp_path.glob(".*"))  # no temporary file left


# --- the labelled motion, measured on pixels ----------------------------------------------


def _samples(n: int, t: int = 16) -> list[int]:
    """The frames at the centres of ``t`` equal segments, as the service samples."""
    return sorted({min(n - 1, int((k + 0.5) * n / t)) for k in range(t)})


def _mask(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    return np.asarray(frame.max(axis=-1) > 40)


def _centroid(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def _turn(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Degrees (clockwise on screen, y down) of the rigid turn that best maps ``a`` onto ``b``.

    Frame ``b``'s object pixels are turned back about its centroid onto ``a`` (centroids
    aligned, areas matched) for each candidate; the smallest colour error wins.
    """
    ma, mb = _mask(a), _mask(b)
    ca, cb = _centroid(ma), _centroid(mb)
    ys, xs = np.nonzero(mb)
    qx, qy = xs + 0.5 - cb[0], ys + 0.5 - cb[1]
    target = b[ys, xs].astype(np.float32)
    scale = math.sqrt(ma.sum() / mb.sum())
    best, best_err = 0.0, math.inf
    for deg in np.arange(-60.0, 61.0, 1.5):
        r = math.radians(-deg)
        px = ca[0] + scale * (math.cos(r) * qx - math.sin(r) * qy)
        py = ca[1] + scale * (math.sin(r) * qx + math.cos(r) * qy)
        ix = np.clip(np.floor(px).astype(int), 0, a.shape[1] - 1)
        iy = np.clip(np.floor(py).astype(int), 0, a.shape[0] - 1)
        err = float(np.abs(a[iy, ix].astype(np.float32) - target).mean())
        if err < best_err:
            best, best_err = float(deg), err
    return best


CASES = [
    (label, mode, seed)
    for label in LABELS
    for mode in sorted(set(MODES[motion_of(label)[0]]))
    for seed in (0, 1)
]


@pytest.mark.parametrize(("label", "mode", "seed"), CASES)
def test_the_labelled_motion_is_what_the_pixels_show(label: str, mode: str, seed: int) -> None:
    size = (160, 120)
    scene = sample_scene(label, 100 + seed, mode=mode, size=size, frames=40)
    frames: Frames = list(render_frames(scene, clean=True, only=_samples(scene.frames)))
    masks = [_mask(f) for f in frames]
    assert all(m.sum() > 20 for m in masks)
    axis, sign = motion_of(label)
    if axis in ("x", "y"):
        k = 0 if axis == "x" else 1
        travel = _centroid(masks[-1]) - _centroid(masks[0])
        assert sign * travel[k] > 0.2 * size[k], travel
        assert abs(travel[k]) > 2 * abs(travel[1 - k]), travel
    elif axis == "zoom":
        ratio = masks[-1].sum() / masks[0].sum()
        assert (ratio > 1.8) if sign > 0 else (ratio < 1 / 1.8), ratio
    else:
        steps = [_turn(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
        assert sign * sum(steps) > 45, steps
        # Backwards steps beyond the search grid's noise (1.5 degrees): at most one.
        assert sum(sign * step < -2 for step in steps) <= 1, steps


def test_the_clean_render_is_the_hero_of_the_full_render() -> None:
    scene = sample_scene("move_right", 5)
    only = [0, scene.frames - 1]
    clean = list(render_frames(scene, clean=True, only=only))
    full = list(render_frames(scene, only=only))
    assert all(f.shape == (scene.height, scene.width, 3) for f in clean + full)
    assert not np.array_equal(clean[0], full[0])  # a backdrop, clutter and a finish


@pytest.mark.parametrize("label", LABELS)
def test_distractors_are_smaller_and_go_nowhere(label: str) -> None:
    for seed in range(30):
        scene = sample_scene(label, seed)
        hero = scene.hero
        for extra in scene.extras:
            assert extra.radius.max() < hero.radius.max()
            assert np.allclose(extra.centre[0], extra.centre[-1], atol=1e-6)
            assert abs(extra.angle[-1] - extra.angle[0]) < 1e-6
            reach = np.abs(extra.centre - extra.centre[0]).max()
            assert reach <= 0.06 * min(scene.width, scene.height) + 1e-9


@pytest.mark.parametrize("label", LABELS)
def test_the_hero_stays_mostly_in_frame(label: str) -> None:
    for seed in range(30):
        s = sample_scene(label, seed)
        centre = s.camera.to_screen(s.hero.centre, s.width, s.height)
        slack = 0.25 * s.hero.radius * s.camera.zoom
        assert (centre >= -slack[:, None]).all()
        assert (centre[:, 0] <= s.width + slack).all()
        assert (centre[:, 1] <= s.height + slack).all()


# --- independence from the training renderer ----------------------------------------------


def _imported(tree: ast.Module, package: str) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            names += [str(a.value) for a in node.args if isinstance(a, ast.Constant)]
    return [str(n) for n in names]


def test_no_module_imports_the_training_renderer() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        names = _imported(ast.parse(path.read_text()), "model_export.data.heldout")
        assert names, path
        offending = [n for n in names if re.match(r"model_export\.data\.synth(\.|$)", n)]
        assert not offending, (path.name, offending)
        assert not any("synth" in n for n in names), (path.name, names)
