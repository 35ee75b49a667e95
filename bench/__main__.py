"""``python -m bench``: the service against its floor, a naive and an idiomatic server.

    python -m bench                      # full: W1 + W2 + W3, 3 repeats (~10-15 min on 2 cores)
    python -m bench --quick              # a few short videos, one repeat (~1 min)
    python -m bench --workloads w1       # W1 only
    python -m bench --set VIDLSTM_DECODE_TOLERANCE=0   # try a service setting

Writes ``latest.json`` and ``latest.md`` to ``--out`` (default ``bench/results``).
Without ``--model`` it uses ``models/vidlstm.onnx``, or else exports the default
architecture untrained (the cost is what is measured) into the cache.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report, workloads
from bench.results import summarise
from bench.suite import CONTENDERS, Config, Suite
from service.pipeline.inference import load_model

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "vidlstm.onnx"
# What `make model` trains (model_export.pipeline.RunConfig; a test keeps them equal).
DEFAULT_GEOMETRY = (16, 128, 128)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few short videos, one repeat")
    parser.add_argument("--workloads", default="w1,w2,w3", help="subset of w1,w2,w3 (w1 always)")
    parser.add_argument("--repeats", type=int, default=None, help="default 3, quick 1")
    parser.add_argument("--concurrency", default=None, help="service levels on W1 (1,8,32)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "cache")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--set", action="append", default=[], metavar="VIDLSTM_X=V", help="service setting"
    )
    return parser


def resolve_model(arg: Path | None, cache: Path) -> Path:
    if arg is not None:
        return arg
    if DEFAULT_MODEL.exists():
        return DEFAULT_MODEL
    frames, height, width = DEFAULT_GEOMETRY
    path = cache / f"untrained-lstm-{frames}x{height}x{width}.onnx"
    if not path.exists():
        log.info("no %s yet: exporting the default architecture untrained", DEFAULT_MODEL)
        # torch is imported only here: the bench itself runs without it.
        from model_export.config import RunConfig, model_config  # noqa: PLC0415
        from model_export.data.synth import LABELS  # noqa: PLC0415
        from model_export.export import ModelMetadata, export_onnx  # noqa: PLC0415
        from model_export.nets.classifier import build_model  # noqa: PLC0415

        run = RunConfig(num_frames=frames, height=height, width=width)
        net = build_model(model_config(run, "lstm", len(LABELS))).eval()
        meta = ModelMetadata(
            labels=list(LABELS),
            num_frames=run.num_frames,
            height=run.height,
            width=run.width,
            name="untrained",
            version="0",
        )
        cache.mkdir(parents=True, exist_ok=True)
        export_onnx(net, path, metadata=meta)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the servers started below are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    load_start = report.load_average()
    names = ["w1", *(n for n in args.workloads.split(",") if n in ("w2", "w3")), "tiny"]
    repeats = args.repeats or (1 if args.quick else 3)
    concurrency = args.concurrency or ("1,8" if args.quick else "1,8,32")
    env = dict(item.split("=", 1) for item in args.set)
    model = resolve_model(args.model, args.cache)
    wanted = [workloads.spec(n, quick=args.quick) for n in names]
    ready = workloads.ensure(wanted, args.cache, workers=_cores())
    cfg = Config(
        model=model,
        workloads={w.name: w for w in ready},
        repeats=repeats,
        concurrency=tuple(int(c) for c in concurrency.split(",")),
        contenders=tuple(c for c in args.contenders.split(",") if c),
        log_dir=_log_dir(args.cache),
        env=env,
        cache=args.cache,
    )
    if "service" not in cfg.contenders:
        raise SystemExit("the service must be among the contenders")
    measured = Suite(cfg).run()
    doc = _document(args, cfg, load_start) | summarise(measured)
    json_path, md_path = report.write(doc, args.out)
    print(md_path.read_text())
    log.info("wrote %s and %s", json_path, md_path)
    return 0


def _document(args: argparse.Namespace, cfg: Config, load_start: list[float]) -> dict[str, Any]:
    info = load_model(cfg.model, intra_op_threads=1).info
    s = cfg.settings
    return {
        "version": 1,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "quick": args.quick,
        "repeats": cfg.repeats,
        "machine": report.machine(),
        "load_average": {"start": load_start, "end": report.load_average()},
        "model": {
            "path": str(cfg.model),
            "name": info.name,
            "version": info.version,
            "clip_shape": list(info.clip_shape),
            "trained": info.name != "untrained",
        },
        "settings": {
            "decode_workers": s.decode_workers,
            "max_batch_size": s.max_batch_size,
            "max_delay_ms": s.max_delay_ms,
            "intra_op_threads": s.intra_op_threads,
            "decode_mode": str(getattr(s, "decode_mode", "exact (before issue 5)")),
            **cfg.env,
        },
        "workloads": {
            name: {
                "title": w.title,
                "videos": len(w.clips),
                "seconds": round(w.seconds, 1),
                "bytes": sum(p.stat().st_size for p in w.paths),
            }
            for name, w in cfg.workloads.items()
        },
    }


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _log_dir(cache: Path) -> Path:
    path = cache / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
