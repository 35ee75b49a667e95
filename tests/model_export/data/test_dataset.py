"""Dataset: scanning, cleaning bad files, the stratified split and the decode cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model_export.data import cache as cache_mod
from model_export.data.dataset import load_dataset, serving_frames
from model_export.data.split import stratified_split
from model_export.data.store import RowStore
from service.media.clip import decode_clip
from tests.support.media import moving_square_frames, write_video

T, H, W = 4, 24, 32


def _make_folder(root: Path, per_class: int = 5) -> Path:
    for label, direction in (("left", -1), ("right", 1)):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            frames = moving_square_frames(12 + i, 48, 64, direction=direction, size=12)
            write_video(root / label / f"{label}_{i}.mp4", frames)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("data"))


def test_serving_frames_are_exactly_the_serving_clip(folder: Path, tmp_path: Path) -> None:
    data = load_dataset(folder, num_frames=T, height=H, width=W, cache_dir=tmp_path, workers=1)
    assert data.clips.shape == (10, 3 * T, H, W, 3)
    assert data.labels == ("left", "right")
    for i, rel in enumerate(data.files):
        served = decode_clip(folder / rel, num_frames=T, height=H, width=W).frames
        np.testing.assert_array_equal(serving_frames(data.clips[i : i + 1])[0], served)
    clips, targets = data.split("test", serving=True)
    assert clips.shape[1:] == (T, H, W, 3)
    assert clips.dtype == np.uint8
    assert len(clips) == len(targets)


def test_corrupt_files_are_skipped_and_reported(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "data", per_class=3)
    rng = np.random.default_rng(0)
    (root / "left" / "noise.mp4").write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    good = (root / "right" / "right_0.mp4").read_bytes()
    (root / "right" / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (root / "right" / "notes.txt").write_text("not a video\n")
    (root / "left" / "empty.mp4").write_bytes(b"")
    write_video(root / "left" / "short.mp4", moving_square_frames(1, 48, 64))

    data = load_dataset(root, num_frames=T, height=H, width=W, cache_dir=tmp_path / "c")

    skipped = {s.path: s.reason for s in data.skipped}
    assert set(skipped) == {
        "left/noise.mp4",
        "left/empty.mp4",
        "left/short.mp4",
        "right/truncated.mp4",
        "right/notes.txt",
    }
    assert "too short" in skipped["left/short.mp4"]
    assert all(reason for reason in skipped.values())
    used = np.concatenate(list(data.splits.values()))
    assert sorted(data.files[i] for i in used) == sorted(
        f"{label}/{label}_{i}.mp4" for label in ("left", "right") for i in range(3)
    )


def test_stratified_split_is_seeded_disjoint_and_balanced() -> None:
    targets = np.repeat(np.arange(4), [20, 20, 20, 7]).astype(np.int64)
    train, val, test = stratified_split(targets, fractions=(0.7, 0.15, 0.15), seed=3)
    assert len(np.intersect1d(train, val)) == len(np.intersect1d(train, test)) == 0
    assert len(np.intersect1d(val, test)) == 0
    assert len(train) + len(val) + len(test) == len(targets)
    for cls in range(3):
        assert [int(np.sum(targets[s] == cls)) for s in (train, val, test)] == [14, 3, 3]
    assert all(np.sum(targets[s] == 3) >= 1 for s in (val, test))
    again = stratified_split(targets, fractions=(0.7, 0.15, 0.15), seed=3)
    other = stratified_split(targets, fractions=(0.7, 0.15, 0.15), seed=4)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(train, other[0])


def test_cache_is_reused_and_invalidated(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(folder, num_frames=T, height=H, width=W, cache_dir=tmp_path, workers=1)

    def no_decoding(*args: object, **kwargs: object) -> Iterator[object]:
        raise AssertionError("decoded again although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(cache_mod, "_decode_all", no_decoding)
        second = load_dataset(
            folder, num_frames=T, height=H, width=W, cache_dir=tmp_path, workers=1, seed=1
        )
    np.testing.assert_array_equal(first.clips, second.clips)
    assert first.fingerprint == second.fingerprint
    assert len(list(tmp_path.glob("*.npy"))) == 1

    # Another geometry, or a changed file, needs decoding again.
    load_dataset(folder, num_frames=T, height=H, width=16, cache_dir=tmp_path, workers=1)
    victim = folder / "left" / "left_0.mp4"
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_dataset(folder, num_frames=T, height=H, width=W, cache_dir=tmp_path, workers=1)
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_given_splits_are_kept(tmp_path: Path) -> None:
    for split, n in (("train", 4), ("test", 2)):
        _make_folder(tmp_path / "data" / split, per_class=n)
    data = load_dataset(
        tmp_path / "data", num_frames=T, height=H, width=W, cache_dir=tmp_path / "c", workers=1
    )
    assert {data.files[i].split("/")[0] for i in data.splits["test"]} == {"test"}
    assert {data.files[i].split("/")[0] for i in data.splits["val"]} == {"train"}
    assert len(data.splits["val"]) >= 2
    assert len(data.splits["train"]) + len(data.splits["val"]) == 8


def test_a_stopped_decode_resumes_where_it_stopped(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding is journalled: after a crash, only the files the journal lacks are
    decoded again, and the cache equals one decoded in a single go."""
    monkeypatch.setattr(cache_mod, "SYNC_EVERY", 3)
    real = cache_mod._decode_one
    calls: list[Path] = []

    def crash_after_five(job: tuple[Path, tuple[int, int, int, int]]) -> cache_mod.Decoded:
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(job[0])
        return real(job)

    monkeypatch.setattr(cache_mod, "_decode_one", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(folder, num_frames=T, height=H, width=W, cache_dir=tmp_path / "a", workers=1)
    assert len(list((tmp_path / "a").glob("*.journal.jsonl"))) == 1
    assert not list((tmp_path / "a").glob("*.json"))  # no index: the cache is not complete
    calls.clear()
    def counted(job: tuple[Path, tuple[int, int, int, int]]) -> cache_mod.Decoded:
        calls.append(job[0])
        return real(job)

    monkeypatch.setattr(cache_mod, "_decode_one", counted)
    resumed = load_dataset(
        folder, num_frames=T, height=H, width=W, cache_dir=tmp_path / "a", workers=1
    )
    assert len(calls) == 10 - 3  # rows 0-2 were journalled; rows 3-4 were not
    assert not list((tmp_path / "a").glob("*.journal.jsonl"))
    whole = load_dataset(
        folder, num_frames=T, height=H, width=W, cache_dir=tmp_path / "b", workers=1
    )
    np.testing.assert_array_equal(resumed.clips, whole.clips)
    assert resumed.fingerprint == whole.fingerprint


def test_training_reads_batches_not_splits(folder: Path, tmp_path: Path) -> None:
    """A split's view reads rows from the cache file when indexed: the same frames as
    loading the split, without holding it."""
    data = load_dataset(folder, num_frames=T, height=H, width=W, cache_dir=tmp_path, workers=1)
    for name, serving in (("train", False), ("test", True), ("all", True)):
        view, targets = data.view(name, serving=serving)
        clips, expected = data.split(name, serving=serving)
        assert view.shape == clips.shape
        np.testing.assert_array_equal(targets, expected)
        np.testing.assert_array_equal(view[1:], clips[1:])
        np.testing.assert_array_equal(view[np.array([0, -1])], clips[[0, -1]])
    assert isinstance(data.clips, RowStore)
