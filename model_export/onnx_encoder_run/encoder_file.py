"""The built-in CNN of a trained checkpoint as an encoder file: ``python -m model_export
encoder-file CHECKPOINT OUT.onnx``.

The per-frame CNN of a model that ``make model`` trained (on the synthetic
motions) becomes a frozen image encoder for ``--encoder onnx:OUT.onnx``:
``image`` ``(B, 3, h, w)`` float32 in, ``features`` ``(B, F)`` out, at the size
the CNN works at (the model's frames pooled: 64 x 64 for the default model),
with its normalisation in the file's ``vidlstm_encoder.*`` metadata. The same
contract as a torchvision or timm export, so it serves as a small, local
stand-in for one where those cannot be installed.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import torch

from model_export.checkpoint import load_checkpoint
from model_export.nets.classifier import RGB_MEAN, RGB_STD
from model_export.nets.encoder_spec import META_PREFIX

log = logging.getLogger(__name__)

OPSET = 17


def export_encoder_file(checkpoint: Path, out: Path) -> Path:
    """Write ``checkpoint``'s per-frame CNN to ``out`` as an encoder file; returns ``out``."""
    model = load_checkpoint(checkpoint)
    encoder = model.encoder
    config = model.config
    height, width = config.height // config.pool, config.width // config.pool
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on tracing
        torch.onnx.export(
            encoder.eval(),
            (torch.zeros(2, 3, height, width),),
            str(tmp),
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(tmp))
    props = {
        "range": "0-1",
        "mean": ",".join(str(v) for v in RGB_MEAN),
        "std": ",".join(str(v) for v in RGB_STD),
        "layout": "nchw",
        "channels": "rgb",
        "source": f"the per-frame CNN of {checkpoint.name}",
    }
    onnx.helper.set_model_props(proto, {META_PREFIX + k: v for k, v in props.items()})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    log.info("%s: %dx%d frames -> %d features", out, height, width, encoder.feature_dim)
    return out
