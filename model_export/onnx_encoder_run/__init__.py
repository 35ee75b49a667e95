"""A pretrained image encoder through ONNX: ``python -m model_export ... --encoder onnx:PATH``.

The encoder (:mod:`model_export.nets.onnx_encoder`) runs once over every
decoded frame (:mod:`model_export.data.features`); the temporal heads
(:mod:`model_export.nets.head`) train on those features in seconds an epoch
(:mod:`.train`); :mod:`.compose` joins encoder and head into one verified
model file; :mod:`.run` strings the stages together.
"""

from model_export.onnx_encoder_run.options import add_encoder_arguments, encoder_spec
from model_export.onnx_encoder_run.run import train_and_export_with_onnx_encoder

__all__ = ["add_encoder_arguments", "encoder_spec", "train_and_export_with_onnx_encoder"]
