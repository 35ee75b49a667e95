"""Store: ``.npy`` rows read and written in place, never mapped whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_export.data.store import RowStore, RowView, RowWriter, create_rows


@pytest.fixture
def array(tmp_path: Path) -> tuple[np.ndarray, Path]:
    values = np.random.default_rng(0).integers(0, 256, (10, 6, 4, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", values)
    return values, tmp_path / "a.npy"


@pytest.mark.parametrize(
    "index",
    [3, -1, slice(2, 8, 2), slice(None), [9, 0, 0, 4], np.array([5]), (3, [0, 2]), ([1, 2], 4)],
)
def test_rows_read_as_numpy_indexes_them(array: tuple[np.ndarray, Path], index: Any) -> None:
    values, path = array
    np.testing.assert_array_equal(RowStore(path)[index], values[index])


def test_a_store_knows_its_shape_and_refuses_rows_out_of_range(
    array: tuple[np.ndarray, Path],
) -> None:
    values, path = array
    store = RowStore(path)
    assert (store.shape, store.dtype, len(store)) == (values.shape, values.dtype, 10)
    assert store.nbytes == values.nbytes
    np.testing.assert_array_equal(np.asarray(store), values)
    with pytest.raises(IndexError):
        store[[3, 10]]


def test_a_view_picks_rows_and_frames(array: tuple[np.ndarray, Path]) -> None:
    values, path = array
    rows = np.array([2, 4, 6, 8])
    view = RowView(RowStore(path), rows, frames=slice(1, None, 3))
    assert view.shape == (4, 2, 4, 5, 3)
    np.testing.assert_array_equal(view[:], values[rows][:, 1::3])
    np.testing.assert_array_equal(view[1], values[4, 1::3])
    np.testing.assert_array_equal(view[np.array([0, 3])], values[[2, 8]][:, 1::3])


def test_rows_written_in_place_read_back(tmp_path: Path) -> None:
    values = np.random.default_rng(1).standard_normal((7, 3, 4)).astype(np.float32)
    path = tmp_path / "w.npy"
    create_rows(path, values.shape, np.float32)
    np.testing.assert_array_equal(np.load(path), np.zeros_like(values))
    with RowWriter(path) as writer:
        for i in (6, 0, 3, 1, 2, 5, 4):
            writer.write(i, values[i])
        writer.sync()
        with pytest.raises(ValueError, match="shape"):
            writer.write(0, values[0, :2])
    np.testing.assert_array_equal(np.load(path), values)
    np.testing.assert_array_equal(RowStore(path)[:], values)
