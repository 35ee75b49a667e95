"""Splits that do not leak: clip groups, official split lists, and the layout errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from model_export.data.dataset import load_dataset
from model_export.data.folder import (
    DataLayoutError,
    VideoFile,
    apply_split_lists,
    read_folder,
    read_split_list,
)
from model_export.data.groups import UCF101_PATTERN, resolve_groups
from model_export.data.split import (
    Indices,
    assign_splits,
    group_strata,
    grouped_split,
    require_enough,
    stratified_split,
)
from tests.support.media import MPEG4_AVI, moving_square_frames, write_video

LABELS = ("Left", "Right")


def _name(label: str, group: int, clip: int) -> str:
    return f"{label}/v_{label}_g{group:02d}_c{clip:02d}.avi"


def _files(
    groups: Mapping[str, Sequence[int]], clips: int = 3, split: str | None = None
) -> list[VideoFile]:
    """UCF101-named files: ``groups`` maps each label to its group numbers."""
    return [
        VideoFile(_name(label, g, c), label, split, 1000, 0)
        for label, numbers in groups.items()
        for g in numbers
        for c in range(1, clips + 1)
    ]


def _targets(files: Sequence[VideoFile]) -> npt.NDArray[np.int64]:
    return np.array([LABELS.index(f.label) for f in files], dtype=np.int64)


def _all(files: Sequence[VideoFile]) -> Indices:
    return np.arange(len(files), dtype=np.int64)


def _groups_by_split(splits: dict[str, Indices], groups: Sequence[str]) -> dict[str, set[str]]:
    return {name: {groups[i] for i in idx} for name, idx in splits.items()}


def _assert_no_leak(splits: dict[str, Indices], groups: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for name, idx in splits.items():
        for i in idx:
            assert seen.setdefault(groups[i], name) == name, f"group {groups[i]} leaks"


# -- grouping ------------------------------------------------------------------------


def test_auto_groups_only_when_every_name_matches(caplog: pytest.LogCaptureFixture) -> None:
    names = [f.rel for f in _files({"Left": [1, 2], "Right": [1]})]
    pattern, groups = resolve_groups(names, "auto")
    assert pattern == UCF101_PATTERN
    assert groups == ("01",) * 3 + ("02",) * 3 + ("01",) * 3
    assert resolve_groups([*names, "Left/notes.avi"], "auto") == (None, ("",) * 10)
    assert "1 of 10 file names lack" in caplog.text, "a stray file is warned of"
    assert resolve_groups(names, None) == (None, ("",) * 9)
    # Only the file name is matched: a folder named like a group does not count.
    assert resolve_groups(["x_g01_y/clip.avi"], "auto") == (None, ("",))


def test_an_explicit_pattern_must_match_every_name() -> None:
    names = [f"a/person{i:02d}_boxing.avi" for i in range(3)]
    assert resolve_groups(names, r"^(person\d+)_") == (
        r"^(person\d+)_",
        ("person00", "person01", "person02"),
    )
    strays = [f"a/clip{i}.avi" for i in range(7)]
    with pytest.raises(DataLayoutError, match=r"does not match 7 of 10") as err:
        resolve_groups(names + strays, r"^(person\d+)_")
    assert "a/clip0.avi, a/clip1.avi, a/clip2.avi, a/clip3.avi, a/clip4.avi and 2 more" in str(
        err.value
    )
    with pytest.raises(DataLayoutError, match="no capture group"):
        resolve_groups(names, r"person\d+")
    with pytest.raises(DataLayoutError, match="not a regular expression"):
        resolve_groups(names, r"(person")


def test_groups_are_stratified_by_their_majority_class() -> None:
    targets = np.array([0, 0, 0, 1, 1, 1, 0, 1], dtype=np.int64)
    group_of = np.array([0, 0, 0, 0, 1, 1, 2, 2], dtype=np.int64)
    assert group_strata(targets, group_of, 3).tolist() == [0, 1, -1]


# -- random splits by group ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "numbering",
    [
        {"Left": range(1, 8), "Right": range(8, 14)},  # each group one class
        {"Left": range(1, 11), "Right": range(1, 11)},  # UCF101: numbers shared by classes
    ],
    ids=["per-class", "shared"],
)
def test_no_group_straddles_two_splits(seed: int, numbering: dict[str, range]) -> None:
    files = _files(numbering)
    targets = _targets(files)
    _, groups = resolve_groups([f.rel for f in files])
    splits = assign_splits(
        files, _all(files), targets, seed=seed, fractions=(0.7, 0.15, 0.15), groups=groups
    )
    _assert_no_leak(splits, groups)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(files)))
    for idx in splits.values():
        assert set(targets[idx].tolist()) == {0, 1}, "every class in every split"
    in_train = len(_groups_by_split(splits, groups)["train"])
    assert in_train >= 0.6 * len(set(groups))


def test_grouped_split_is_seeded() -> None:
    files = _files({"Left": range(1, 9), "Right": range(9, 17)})
    targets = _targets(files)
    groups = [f.rel.split("_g")[1][:2] for f in files]
    first = grouped_split(targets, groups, seed=1)
    again = grouped_split(targets, groups, seed=1)
    other = grouped_split(targets, groups, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_without_groups_the_split_is_the_stratified_one() -> None:
    files = _files({"Left": range(1, 6), "Right": range(1, 5)})
    targets = _targets(files)
    kept = _all(files)[1:]
    splits = assign_splits(files, kept, targets, seed=5, fractions=(0.7, 0.15, 0.15))
    expected = stratified_split(targets[kept], fractions=(0.7, 0.15, 0.15), seed=5)
    for name, part in zip(("train", "val", "test"), expected, strict=True):
        np.testing.assert_array_equal(splits[name], kept[part])


def test_given_folders_carve_val_out_of_train_by_group() -> None:
    train = _files({"Left": range(1, 8), "Right": range(1, 8)}, split="train")
    test = _files({"Left": [20, 21], "Right": [20, 21]}, split="test")
    files = train + test
    _, groups = resolve_groups([f.rel for f in files])
    splits = assign_splits(
        files, _all(files), _targets(files), seed=0, fractions=(0.7, 0.15, 0.15), groups=groups
    )
    _assert_no_leak(splits, groups)
    assert splits["test"].tolist() == list(range(len(train), len(files)))
    assert len(splits["val"]) > 0
    assert {files[i].split for i in splits["val"]} == {"train"}


# -- official split lists ------------------------------------------------------------


def _write_list(path: Path, names: Sequence[str], *, ids: bool, newline: str = "\n") -> Path:
    lines = [f"{n} {LABELS.index(n.split('/')[0]) + 1}" if ids else n for n in names]
    path.write_bytes(newline.join(["", *lines, "", ""]).encode())  # blank lines around
    return path


def test_a_split_list_reads_ucf101s_format(tmp_path: Path) -> None:
    text = "\ufeffLeft/v_Left_g01_c01.avi 1\r\n\r\n  Right\\v_Right_g02_c01.avi\r\n./a b/c.avi 2\n"
    (tmp_path / "list.txt").write_text(text, encoding="utf-8", newline="")
    assert read_split_list(tmp_path / "list.txt", tmp_path) == [
        "Left/v_Left_g01_c01.avi",
        "Right/v_Right_g02_c01.avi",
        "a b/c.avi",
    ]
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataLayoutError, match="names no files"):
        read_split_list(tmp_path / "empty.txt", tmp_path)
    with pytest.raises(DataLayoutError, match="cannot read split list"):
        read_split_list(tmp_path / "absent.txt", tmp_path)


def test_official_lists_are_honoured_exactly(tmp_path: Path) -> None:
    files = _files({"Left": range(1, 11), "Right": range(1, 11)})
    test_names = [f.rel for f in files if f.rel.split("_g")[1][:2] in ("01", "02", "03")]
    train_names = [f.rel for f in files if f.rel not in test_names and "_g10_" not in f.rel]
    lists = [
        _write_list(tmp_path / "trainlist01.txt", train_names, ids=True),
        _write_list(tmp_path / "testlist01.txt", test_names, ids=False, newline="\r\n"),
    ]
    listed, unlisted = apply_split_lists(tmp_path, files, lists)
    assert unlisted == [f.rel for f in files if "_g10_" in f.rel]
    _, groups = resolve_groups([f.rel for f in listed])
    splits = assign_splits(
        listed, _all(listed), _targets(listed), seed=0, fractions=(0.7, 0.15, 0.15), groups=groups
    )
    names = {k: {listed[i].rel for i in v} for k, v in splits.items()}
    assert names["test"] == set(test_names)
    assert names["train"] | names["val"] == set(train_names)
    assert names["val"], "val is carved out of train"
    _assert_no_leak(splits, groups)

    # A third list gives val; nothing is carved.
    val_names, train_names = train_names[:6], train_names[6:]
    lists = [
        _write_list(tmp_path / "train.txt", train_names, ids=True),
        lists[1],
        _write_list(tmp_path / "val.txt", val_names, ids=True),
    ]
    listed, _ = apply_split_lists(tmp_path, files, lists)
    splits = assign_splits(
        listed, _all(listed), _targets(listed), seed=0, fractions=(0.7, 0.15, 0.15)
    )
    assert {listed[i].rel for i in splits["val"]} == set(val_names)
    assert {listed[i].rel for i in splits["train"]} == set(train_names)


def test_list_errors_name_the_files(tmp_path: Path) -> None:
    files = _files({"Left": [1, 2], "Right": [1, 2]})
    names = [f.rel for f in files]
    train = _write_list(tmp_path / "train.txt", names[:8], ids=True)
    both = _write_list(tmp_path / "test.txt", names[7:], ids=True)
    with pytest.raises(DataLayoutError, match=r"1 files are in two split lists: Right/v_Right"):
        apply_split_lists(tmp_path, files, [train, both])
    ghosts = [f"Left/v_Left_g09_c0{i}.avi" for i in range(1, 8)]
    missing = _write_list(tmp_path / "missing.txt", [*names[8:], *ghosts], ids=False)
    with pytest.raises(DataLayoutError, match=r"7 files listed in missing.txt") as err:
        apply_split_lists(tmp_path, files, [train, missing])
    assert "Left/v_Left_g09_c01.avi" in str(err.value)
    assert "and 2 more" in str(err.value)
    with pytest.raises(DataLayoutError, match=r"TRAIN\.txt TEST\.txt"):
        apply_split_lists(tmp_path, files, [train])


def test_a_list_may_differ_from_the_folder_in_case(tmp_path: Path) -> None:
    files = _files({"Left": [1], "Right": [1]}, clips=1)
    train = tmp_path / "train.txt"
    train.write_text("left/v_Left_g01_c01.avi 1\n")
    test = _write_list(tmp_path / "test.txt", [files[1].rel], ids=True)
    listed, unlisted = apply_split_lists(tmp_path, files, [train, test])
    assert [(f.rel, f.split) for f in listed] == [(files[0].rel, "train"), (files[1].rel, "test")]
    assert unlisted == []


# -- layout errors -------------------------------------------------------------------


def test_a_label_with_too_few_videos_is_named() -> None:
    targets = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    with pytest.raises(DataLayoutError, match=r"'Right' has 2 \(each needs 3\)") as err:
        require_enough(LABELS, targets, (), need=3)
    assert "'Left'" not in str(err.value)
    groups = ["1", "1", "2", "3", "4"]
    with pytest.raises(DataLayoutError, match=r"too few groups.*'Left' has 2.*'Right' has 2"):
        require_enough(LABELS, targets, groups, need=3)
    with pytest.raises(DataLayoutError, match="'Up' has 0"):
        require_enough(LABELS, targets, (), need=2, empty=["Up"])


def test_unusable_data_folders_say_what_layout_is_expected(tmp_path: Path) -> None:
    layout = r"expected DATA/<label>/<videos>"
    with pytest.raises(DataLayoutError, match=rf"does not exist; {layout}"):
        read_folder(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataLayoutError, match=rf"is not a folder; {layout}"):
        read_folder(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match=rf"no label folders in .*empty; {layout}"):
        read_folder(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "v.avi").write_text("x")
    with pytest.raises(DataLayoutError, match="no label folders"):
        read_folder(tmp_path / "flat")
    (tmp_path / "hollow" / "Left").mkdir(parents=True)
    (tmp_path / "hollow" / "Right").mkdir()
    with pytest.raises(DataLayoutError, match=r"no files in the label folders .*\(Left, Right\)"):
        read_folder(tmp_path / "hollow")


def test_load_dataset_names_a_small_label_before_decoding(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for rel in [_name("Left", g, 1) for g in (1, 2, 3)] + [_name("Right", 1, 1)]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not decoded")
    (root / "Empty").mkdir()
    for pattern, message in ((None, r"'Right' has 1.*'Empty' has 0"), ("auto", "too few groups")):
        with pytest.raises(DataLayoutError, match=message):
            load_dataset(
                root, num_frames=4, height=32, width=32, cache_dir=tmp_path / "c",
                group_pattern=pattern, workers=1, progress=False,
            )  # fmt: skip
    assert not (tmp_path / "c").exists(), "nothing was decoded"


# -- end to end: real videos through the decode cache --------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``Left``/``Right`` x groups 1-4 x clips 1-2: 16 tiny real AVI files."""
    root = tmp_path_factory.mktemp("ucf") / "data"
    for label, direction in zip(LABELS, (-1, 1), strict=True):
        (root / label).mkdir(parents=True)
        for g in range(1, 5):
            for c in range(1, 3):
                frames = moving_square_frames(6 + c, 32, 32, direction=direction, size=8)
                write_video(root / _name(label, g, c), frames, fmt=MPEG4_AVI)
    return root


def test_a_grouped_folder_loads_without_leaks(folder: Path, tmp_path: Path) -> None:
    data = load_dataset(
        folder, num_frames=4, height=32, width=32, cache_dir=tmp_path, workers=1, progress=False
    )
    assert data.group_pattern == UCF101_PATTERN
    assert data.skipped == ()
    assert data.groups == tuple(f.split("_g")[1][:2] for f in data.files)
    _assert_no_leak(data.splits, data.groups)
    doc = json.loads(json.dumps(data.splits_document()))
    assert doc["group_pattern"] == UCF101_PATTERN
    assert doc["split_files"] == doc["unlisted"] == doc["skipped"] == []
    entries = [e for name in ("train", "val", "test") for e in doc["splits"][name]]
    assert sorted(e["path"] for e in entries) == sorted(data.files)
    for e in entries:
        assert e["group"] == e["path"].split("_g")[1][:2]
        assert e["label"] == e["path"].split("/")[0]
    assert all({e["label"] for e in doc["splits"][name]} == set(LABELS) for name in doc["splits"])


def test_a_folder_with_official_lists_loads_them(folder: Path, tmp_path: Path) -> None:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.avi"))
    test_names = [n for n in names if "_g01_" in n]
    train_names = [n for n in names if "_g02_" in n or "_g03_" in n]
    lists = [
        _write_list(tmp_path / "trainlist01.txt", train_names, ids=True, newline="\r\n"),
        _write_list(tmp_path / "testlist01.txt", test_names, ids=False),
    ]
    data = load_dataset(
        folder,
        num_frames=4,
        height=32,
        width=32,
        cache_dir=tmp_path / "c",
        workers=1,
        progress=False,
        split_files=lists,
    )
    assert len(data.files) == len(train_names) + len(test_names)
    assert tuple(f.rel for f in data.video_files) == data.files
    assert data.unlisted == tuple(n for n in names if "_g04_" in n)
    doc = data.splits_document()
    assert doc["split_files"] == [str(p) for p in lists]
    assert doc["unlisted"] == list(data.unlisted)
    paths = {k: {e["path"] for e in v} for k, v in doc["splits"].items()}
    assert paths["test"] == set(test_names)
    assert paths["train"] | paths["val"] == set(train_names)
    assert {e["group"] for e in doc["splits"]["val"]} in ({"02"}, {"03"})
    _assert_no_leak(data.splits, data.groups)
