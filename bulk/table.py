"""The output: one row per input file, a Parquet dataset (a folder of part files).

``OUT.parquet`` is a folder, as Spark and Ray write it: pandas, pyarrow and
DuckDB (``read_parquet('OUT.parquet/*.parquet')``) read it as one table. Each
part is written whole under a temporary name and renamed, so a killed job
leaves only complete parts; ``--resume`` reads the paths they hold and skips
them. A part that cannot be read (a Ray write cut short) is set aside
(``*.broken``) and its files are done again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from service.api.schemas import ClassifyResponse
from service.core.errors import VidlstmError

log = logging.getLogger(__name__)

Row = dict[str, Any]
OK = "ok"
# Not a problem the service answers: the file could not be read where it lies.
UNREADABLE = "unreadable"

_LABEL_SCORE = pa.struct([("label", pa.string()), ("score", pa.float64())])
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("probabilities", pa.map_(pa.string(), pa.float64())),
        ("top", pa.list_(_LABEL_SCORE)),
        (
            "segments",
            pa.list_(
                pa.struct(
                    [
                        ("start_s", pa.float64()),
                        ("end_s", pa.float64()),
                        ("top", pa.list_(_LABEL_SCORE)),
                    ]
                )
            ),
        ),
        ("duration_s", pa.float64()),
        ("frames_used", pa.int32()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("elapsed_ms", pa.float64()),
    ]
)


def ok_row(path: Path, size: int, response: ClassifyResponse, elapsed_s: float) -> Row:
    """The row of a classified file: what ``POST /classify`` answered, flattened."""
    best = response.top[0]
    segments = None
    if response.segments is not None:
        segments = [
            {"start_s": s.start_s, "end_s": s.end_s, "top": [t.model_dump() for t in s.top]}
            for s in response.segments
        ]
    return {
        "path": str(path),
        "bytes": size,
        "status": OK,
        "error": None,
        "label": best.label,
        "score": best.score,
        "probabilities": list(response.probabilities.items()),
        "top": [t.model_dump() for t in response.top],
        "segments": segments,
        "duration_s": response.video.duration_s,
        "frames_used": response.video.frames_used,
        "model_name": response.model.name,
        "model_version": response.model.version,
        "elapsed_ms": round(elapsed_s * 1000, 3),
    }


def failed_row(
    path: Path,
    size: int | None,
    err: VidlstmError | OSError,
    model: Mapping[str, str],
    elapsed_s: float,
) -> Row:
    """The row of a file that failed: the service's problem slug and detail, or unreadable."""
    if isinstance(err, VidlstmError):
        status, detail = err.slug, err.detail
    else:
        status, detail = UNREADABLE, err.strerror or type(err).__name__
    return {
        "path": str(path),
        "bytes": size,
        "status": status,
        "error": detail,
        "label": None,
        "score": None,
        "probabilities": None,
        "top": None,
        "segments": None,
        "duration_s": None,
        "frames_used": None,
        "model_name": model["name"],
        "model_version": model["version"],
        "elapsed_ms": round(elapsed_s * 1000, 3),
    }


def to_arrow(rows: Sequence[Row]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def done_paths(out: Path) -> set[str]:
    """The paths the complete parts in ``out`` hold (unreadable parts set aside)."""
    done: set[str] = set()
    if not out.is_dir():
        return done
    for part in sorted(out.glob("*.parquet")):
        try:
            paths = pq.read_table(part, columns=["path"]).column("path").to_pylist()
        except (pa.ArrowException, OSError) as err:
            log.warning("setting aside an unreadable part: %s (%s)", part.name, err)
            part.rename(part.with_suffix(".broken"))
            continue
        done.update(p for p in paths if p is not None)
    return done


class PartWriter:
    """Rows buffered and written as whole part files, every ``rows`` rows or ``seconds``."""

    def __init__(self, out: Path, *, rows: int = 256, seconds: float = 15.0) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.rows, self.seconds = rows, seconds
        self._buffer: list[Row] = []
        self._run = uuid.uuid4().hex[:8]  # parts of a resumed run never clash with the first
        self._parts = 0
        self._last = time.monotonic()

    def add(self, row: Row) -> None:
        self._buffer.append(row)
        due = time.monotonic() - self._last >= self.seconds
        if len(self._buffer) >= self.rows or due:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        if not self._buffer:
            return
        name = f"part-{self._run}-{self._parts:05d}.parquet"
        partial = self.out / f".{name}.tmp"
        pq.write_table(to_arrow(self._buffer), partial)
        partial.replace(self.out / name)
        self._parts += 1
        self._buffer.clear()
