"""Store: rows of an on-disk ``.npy`` array, read on demand, never mapped whole.

The decoded-clip cache and the feature cache are ``.npy`` files of shape
``(N, ...)``: one row per video. A training batch reads its rows with plain
positioned reads (``os.pread``), so memory holds one batch, not a split, and
the process's resident size does not grow with the data set. (A memory map
would count every page it has touched as resident: a pass over a 20 GB cache
would make the process look 20 GB big.) The kernel's page cache still keeps
recently read rows, outside the process.

    RowStore(path)[rows]            -> (len(rows), ...) array, a copy
    RowStore(path)[start:stop]      -> the same for a slice
    RowView(store, rows)[batch]     -> a split's rows, indexed from 0
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Index = int | slice | Sequence[int] | npt.NDArray[np.integer[Any]]


class Rows(Protocol):
    """What trainers and evaluators read clips or features from: an array or a view."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: Any, /) -> Any: ...


class RowStore:
    """A read-only ``(N, ...)`` ``.npy`` file whose rows are read when asked for."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array cannot be read by rows")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(dtype)
        self._row_shape = self.shape[1:]
        self._row_bytes = int(np.prod(self._row_shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self._row_bytes * len(self)

    def __getitem__(self, index: Index | tuple[Any, ...]) -> npt.NDArray[Any]:
        if isinstance(index, tuple):  # rows first, then within the rows
            first, rest = index[0], index[1:]
            rows = self[first]
            picked: npt.NDArray[Any] = (
                rows[rest] if np.ndim(first) == 0 else rows[(slice(None), *rest)]
            )
            return picked
        if isinstance(index, (int, np.integer)):
            row: npt.NDArray[Any] = self._read(np.array([int(index)]))[0]
            return row
        if isinstance(index, slice):
            return self._read(np.arange(len(self))[index])
        return self._read(np.asarray(index, dtype=np.int64))

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def _read(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
        """``(k,)`` row numbers (any order, repeats allowed) -> ``(k, ...)`` rows."""
        n = len(self)
        if len(rows) and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row out of range for {n} rows")
        rows = np.where(rows < 0, rows + n, rows)
        out = np.empty((len(rows), *self._row_shape), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            # Runs of consecutive rows are one read each (sorted batches read in file order).
            start = 0
            while start < len(rows):
                stop = start + 1
                while stop < len(rows) and rows[stop] == rows[stop - 1] + 1:
                    stop += 1
                _read_exactly(
                    fd, flat[start:stop], self._offset + int(rows[start]) * self._row_bytes
                )
                start = stop
        finally:
            os.close(fd)
        return out


def _read_exactly(fd: int, into: npt.NDArray[np.uint8], offset: int) -> None:
    view = memoryview(into.data).cast("B")
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise EOFError(f"the file ends {len(view) - done} bytes early")
        done += got


class RowView:
    """The rows ``rows`` of a store (or an array), indexed ``0..len(rows)-1``; ``frames``
    picks frames of each row (``slice(1, None, 3)``: the served clip of a 3T-frame row)."""

    def __init__(
        self, source: Rows, rows: npt.NDArray[np.int64], *, frames: slice = slice(None)
    ) -> None:
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.frames = frames
        kept = len(range(*frames.indices(source.shape[1])))
        self.shape: tuple[int, ...] = (len(self.rows), kept, *source.shape[2:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Index) -> npt.NDArray[Any]:
        picked = self.rows[index]
        if np.ndim(picked) == 0:
            one: npt.NDArray[Any] = self[np.array([index])][0]
            return one
        batch = np.asarray(self.source[picked])
        if self.frames == slice(None):
            return batch
        return np.ascontiguousarray(batch[:, self.frames])

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def create_rows(path: Path, shape: tuple[int, ...], dtype: npt.DTypeLike) -> None:
    """An ``.npy`` file of ``shape``, zero-filled (sparse on disk until written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": shape}  # fmt: skip
    with path.open("wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        f.truncate(f.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)


class RowWriter:
    """Writes rows into an existing ``.npy`` file in place (``os.pwrite``; no memory map,
    so written rows do not stay resident in this process)."""

    def __init__(self, path: Path) -> None:
        store = RowStore(path)
        self.path, self.shape, self.dtype = path, store.shape, store.dtype
        self._offset, self._row_bytes = store._offset, store._row_bytes
        self._fd = os.open(path, os.O_WRONLY)

    def write(self, row: int, values: npt.NDArray[Any]) -> None:
        """Row ``row`` := ``values`` (of the row's shape and dtype)."""
        data = np.ascontiguousarray(values, dtype=self.dtype)
        if data.shape != self.shape[1:]:
            raise ValueError(f"row of shape {data.shape}, expected {self.shape[1:]}")
        view = memoryview(data.reshape(-1).view(np.uint8).data)
        done, offset = 0, self._offset + row * self._row_bytes
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def sync(self) -> None:
        """What was written is on disk (before progress that counts it is recorded)."""
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
