"""``python -m bulk SRC... --out OUT.parquet``: classify every video the sources name.

Exit status 0 when the job ran, however many files failed (each failure is a
row); 1 when it could not run (no model, nothing to read, an output folder that
is in the way); 2 for wrong arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from bulk import local, ray_engine
from bulk.classifier import JobOptions, bulk_settings
from bulk.sources import SourceError, expand
from bulk.table import OK, done_paths
from service.core.errors import StartupError
from service.core.logs import configure_logging

log = logging.getLogger("bulk")

ENGINES = ("local", "ray")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bulk", description="Classify a video archive into a Parquet table."
    )
    parser.add_argument("sources", nargs="+", metavar="SRC", help="files, folders or path lists")
    parser.add_argument("--out", type=Path, required=True, help="the Parquet folder to write")
    parser.add_argument("--model", type=Path, default=Path("models/vidlstm.onnx"))
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument(
        "--ray-address", default=None, help="an existing cluster ('auto'); default: a local Ray"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="decode workers in all (default: the CPUs)"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--segments", action="store_true", help="per-window results too")
    parser.add_argument("--resume", action="store_true", help="skip the paths already in OUT")
    parser.add_argument(
        "--providers", default="auto", help="ONNX Runtime providers, as VIDLSTM_PROVIDERS"
    )
    parser.add_argument(
        "--part-rows",
        type=int,
        default=256,
        help="rows per Parquet part: what a killed job loses at most (default 256)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("info")
    if min(args.top_k, args.part_rows, args.workers or 1) < 1:
        log.error("--top-k, --workers and --part-rows must be at least 1")
        return 2
    try:
        return _job(args)
    except (SourceError, StartupError) as err:
        log.error("cannot run: %s", err)
        return 1
    except KeyboardInterrupt:
        log.warning("stopped: finished files are in %s; --resume goes on", args.out)
        return 130


def _job(args: argparse.Namespace) -> int:
    paths = expand(args.sources)
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise SourceError(f"{out} exists and is not a folder")
    done = done_paths(out) if args.resume else set()
    if not args.resume and out.is_dir() and any(out.glob("*.parquet")):
        raise SourceError(f"{out} already holds results: --resume, or remove it")
    todo = [p for p in paths if str(p) not in done]
    log.info(
        "%d files, %d done before, %d to classify", len(paths), len(paths) - len(todo), len(todo)
    )
    workers = args.workers or len(os.sched_getaffinity(0))
    providers = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    settings = bulk_settings(args.model, workers=workers, providers=providers)
    started = time.perf_counter()
    options = JobOptions(top_k=args.top_k, segments=args.segments, part_rows=args.part_rows)
    if todo and args.engine == "local":
        local.run(todo, settings, out, options)
    elif todo:
        ray_engine.run(todo, settings, out, options, address=args.ray_address)
    _summary(out, len(todo), time.perf_counter() - started)
    return 0


def _summary(out: Path, classified: int, seconds: float) -> None:
    statuses: Counter[str] = Counter()
    if out.is_dir():
        for part in out.glob("*.parquet"):
            statuses.update(pq.read_table(part, columns=["status"]).column("status").to_pylist())
    failed = {k: v for k, v in statuses.items() if k != OK}
    rate = classified / seconds if seconds > 0 else 0.0
    log.info(
        "%d rows in %s: %d ok, %d failed %s; this run %d files in %.1f s (%.1f files/s)",
        sum(statuses.values()),
        out,
        statuses[OK],
        sum(failed.values()),
        dict(sorted(failed.items())),
        classified,
        seconds,
        rate,
    )


if __name__ == "__main__":
    sys.exit(main())
