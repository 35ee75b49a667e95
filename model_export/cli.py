"""Command line: ``python -m model_export synth|train|export|report|all``.

``all`` runs every stage: the synthetic data (unless ``--data`` names a
folder), training of the LSTM, the mean-pool CNN and the SVM, export to
``OUT/vidlstm.onnx`` with verification, and ``OUT/report.md`` + ``report.json``.
The same seed gives the same data and the same model.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from model_export.config import RunConfig
from model_export.data.folder import DataLayoutError
from model_export.device import DeviceError, resolve_device
from model_export.nets.encoder_spec import EncoderError, EncoderSpec
from model_export.onnx_encoder_run.options import add_encoder_arguments, encoder_spec
from model_export.pipeline import (
    export_model,
    synthesize,
    train_models,
    verify_model,
    write_run_report,
)
from model_export.resume import ResumeError

log = logging.getLogger("model_export")

STAGES = ("synth", "train", "export", "report", "all", "experiment", "encoder-file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    from model_export.data.synth.cli import add_arguments as add_synth_arguments  # noqa: PLC0415

    synth = commands.add_parser("synth", help="generate the synthetic data set only")
    add_synth_arguments(synth)
    encoder_file = commands.add_parser(
        "encoder-file", help="a trained checkpoint's per-frame CNN as an --encoder file"
    )
    encoder_file.add_argument("checkpoint", type=Path, help="e.g. models/checkpoints/lstm.pt")
    encoder_file.add_argument("out", type=Path, help="the ONNX file to write")
    for name, text in (
        ("train", "train the LSTM, the mean-pool CNN and the SVM; score them"),
        ("export", "export OUT/vidlstm.onnx and verify it against PyTorch"),
        ("report", "write OUT/report.md and OUT/report.json"),
        ("all", "synth (without --data) -> train -> export -> verify -> report"),
        ("experiment", "LSTM, mean pool, SVM x motion off/on: DOCS/experiment.{json,md}"),
    ):
        _add_run_arguments(commands.add_parser(name, help=text))
    return parser


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    p.add_argument("--data", type=Path, help="labelled folder DATA/<label>/<videos> "
                   "(or DATA/{train,val,test}/<label>/...); default: synthetic data")  # fmt: skip
    p.add_argument("--out", type=Path, default=d.out, help="model, report and checkpoints")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--epochs", type=int, default=d.epochs, help="most epochs per model")
    p.add_argument("--frames", type=int, default=d.num_frames, help="frames per clip (T)")
    p.add_argument("--height", type=int, default=d.height)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--per-class", type=int, default=d.per_class, help="synthetic videos/label")
    p.add_argument("--alt-per-class", type=int, default=d.alt_per_class,
                   help="alt-style synthetic videos per label (generalisation check)")  # fmt: skip
    p.add_argument("--synth-dir", type=Path, default=d.synth_dir)
    p.add_argument("--alt-dir", type=Path, default=d.alt_dir)
    p.add_argument("--cache", type=Path, default=d.cache_dir, help="decoded-clip cache")
    p.add_argument("--workers", type=int, default=d.workers, help="decode/render processes")
    p.add_argument("--motion", choices=("on", "off"), default="on" if d.motion else "off",
                   help="measurements between frames beside the encoder's features")  # fmt: skip
    p.add_argument("--split-files", type=Path, nargs="+", metavar="LIST", default=(),
                   help="TRAIN.txt TEST.txt [VAL.txt]: official split lists (UCF101's "
                   "format: a path relative to --data a line, then maybe a class id)")  # fmt: skip
    p.add_argument("--group-pattern", default=d.group_pattern, metavar="REGEX",
                   help="clips whose names share this regex's first group come from one "
                   "video and stay in one split; 'auto': UCF101's _g(\\d+)_ when every name "
                   "has it; 'none': no groups")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run from its last epoch checkpoint")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where to train; auto: CUDA when torch sees a GPU")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--docs", type=Path, default=Path("docs"), help="experiment: where to write")
    add_encoder_arguments(p)


def run_config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        out=args.out,
        data=args.data,
        synth_dir=args.synth_dir,
        alt_dir=args.alt_dir,
        cache_dir=args.cache,
        seed=args.seed,
        epochs=args.epochs,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        per_class=args.per_class,
        alt_per_class=args.alt_per_class,
        workers=args.workers,
        progress=not args.no_progress,
        motion=args.motion == "on",
        split_files=tuple(args.split_files),
        group_pattern=None if args.group_pattern == "none" else args.group_pattern,
        resume=args.resume,
        device=args.device,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        return _main(parser, argv)
    except (DataLayoutError, DeviceError, ResumeError) as err:  # a message, not a traceback
        log.error("%s", err)
        return 2


def _main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    start = time.perf_counter()
    if args.command == "synth":
        from model_export.data.synth.cli import run as run_synth  # noqa: PLC0415

        run_synth(args)
        return 0
    if args.command == "encoder-file":
        from model_export.onnx_encoder_run.encoder_file import export_encoder_file  # noqa: PLC0415

        export_encoder_file(args.checkpoint, args.out)
        return 0
    if args.split_files and not 2 <= len(args.split_files) <= 3:
        parser.error("--split-files takes TRAIN.txt TEST.txt [VAL.txt]")
    cfg = run_config(args)
    resolve_device(cfg.device)  # no GPU where one was asked for: fail before decoding
    try:
        spec = encoder_spec(args)
    except EncoderError as err:
        parser.error(str(err))
    if spec is not None:
        if args.command in ("export", "experiment"):
            parser.error("--encoder: use `train` or `all` (they export the composed file)")
        return _with_onnx_encoder(cfg, spec, args.command, start)
    if args.command == "experiment":
        return _experiment(cfg, args.docs, start)
    if args.command in ("train", "all"):
        if args.command == "all" and cfg.data is None:
            synthesize(cfg)
        train_models(cfg)
    if args.command in ("export", "all"):
        export_model(cfg)
    onnx_accuracy = verify_model(cfg) if args.command in ("export", "all") else None
    if args.command in ("report", "all"):
        write_run_report(cfg, onnx_accuracy=onnx_accuracy)
    log.info("%s finished in %.1f s", args.command, time.perf_counter() - start)
    return 0


def _experiment(cfg: RunConfig, docs: Path, start: float) -> int:
    from model_export.evaluation.experiment_page import write_experiment  # noqa: PLC0415
    from model_export.experiment import run_experiment  # noqa: PLC0415

    if cfg.data is None:
        synthesize(cfg)
    rows = run_experiment(cfg)
    context = {
        "data": f"`{cfg.train_dir}`"
        + (" (the embedded synthetic set)" if cfg.data is None else ""),
        "seed": cfg.seed,
        "epochs (every model)": cfg.epochs,
        "clip": f"{cfg.num_frames} frames of {cfg.height} x {cfg.width}",
        "time": f"{time.perf_counter() - start:.0f} s",
    }
    write_experiment(docs, rows, context=context)
    log.info("experiment finished in %.1f s", time.perf_counter() - start)
    return 0


def _with_onnx_encoder(cfg: RunConfig, spec: EncoderSpec, command: str, start: float) -> int:
    """``train``/``all``/``report`` with a frozen ONNX encoder: the heads train on its
    cached features and the composed file is exported (and verified) by ``train``."""
    from model_export.onnx_encoder_run import train_and_export_with_onnx_encoder  # noqa: PLC0415

    results = None
    if command in ("train", "all"):
        if command == "all" and cfg.data is None:
            synthesize(cfg)
        try:
            results = train_and_export_with_onnx_encoder(cfg, spec)
        except EncoderError as err:
            log.error("%s", err)
            return 2
    if command in ("report", "all"):
        write_run_report(cfg, onnx_accuracy=results["onnx_test_accuracy"] if results else None)
    log.info("%s finished in %.1f s", command, time.perf_counter() - start)
    return 0
