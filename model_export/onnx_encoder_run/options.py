"""The command line's encoder options: ``--encoder onnx:PATH`` and its overrides."""

from __future__ import annotations

import argparse

from model_export.nets.encoder_spec import EncoderSpec


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """``--encoder`` and the overrides of what the encoder file says about its input."""
    group = parser.add_argument_group(
        "pretrained encoder",
        "a frozen ONNX image model as the per-frame encoder (the frames' size is then its "
        "input size; --height/--width are not used); unset options come from the file",
    )
    group.add_argument(
        "--encoder", metavar="onnx:PATH", help="ONNX image model taking a float image batch"
    )
    group.add_argument("--encoder-size", metavar="HxW", help="input size, e.g. 224x224")
    group.add_argument("--encoder-layout", choices=("nchw", "nhwc"))
    group.add_argument(
        "--encoder-range", choices=("0-1", "0-255"), help="pixel values before mean and std"
    )
    group.add_argument("--encoder-mean", metavar="R,G,B", help="per input channel")
    group.add_argument("--encoder-std", metavar="R,G,B", help="per input channel")
    group.add_argument("--encoder-channels", choices=("rgb", "bgr"))


def encoder_spec(args: argparse.Namespace) -> EncoderSpec | None:
    """The parsed ``--encoder`` options, or ``None`` for the built-in CNN."""
    if not args.encoder:
        return None
    return EncoderSpec.parse(
        args.encoder,
        size=args.encoder_size,
        layout=args.encoder_layout,
        value_range=args.encoder_range,
        mean=args.encoder_mean,
        std=args.encoder_std,
        channels=args.encoder_channels,
    )
