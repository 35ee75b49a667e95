"""Command line: ``python -m model_export.data.synth --out data/synthetic --seed 0``."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from model_export.data.synth.generate import generate
from model_export.data.synth.style import STYLES

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options, for this CLI and for ``python -m model_export synth``."""
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=150, help="videos per label")
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.7, 0.15, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of each label's videos per split",
    )
    parser.add_argument("--style", choices=sorted(STYLES), default="default")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> Path:
    """Generate with parsed ``args``; logs the wall time."""
    start = time.perf_counter()
    out = generate(
        args.out,
        seed=args.seed,
        per_class=args.per_class,
        split=tuple(args.split),
        style=args.style,
        workers=args.workers,
        progress=not args.no_progress,
    )
    logger.info("synthetic data set ready in %s (%.1f s)", out, time.perf_counter() - start)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.data.synth", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(args)
    return 0
