"""Command line: ``python -m model_export.data.heldout --out data/heldout --per-class 25``."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from model_export.data.heldout.generate import generate

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The generator's options."""
    p = argparse.ArgumentParser(
        prog="python -m model_export.data.heldout",
        description="Render the held-out evaluation set (never train or choose a model on it).",
    )
    p.add_argument("--out", type=Path, default=Path("data/heldout"), help="output folder")
    p.add_argument("--per-class", type=int, default=25, help="videos per label")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tiny", action="store_true", help="small, short videos (a smoke test)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, generate, log the wall time; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    start = time.perf_counter()
    out = generate(
        args.out,
        seed=args.seed,
        per_class=args.per_class,
        workers=args.workers,
        progress=not args.no_progress,
        tiny=args.tiny,
    )
    log.info("held-out set ready in %s (%.1f s)", out, time.perf_counter() - start)
    return 0
