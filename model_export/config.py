"""Run configuration: the options of one ``python -m model_export`` run, and the
model each architecture of the experiment is built with."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from model_export.nets.classifier import ModelConfig

# The side in pixels the per-frame CNN works at; bigger frames are average-pooled to it.
STREAM_SIZE = 64


@dataclass(frozen=True)
class RunConfig:
    """Settings of a whole run (the command line's options)."""

    out: Path = Path("models")
    data: Path | None = None  # a user folder; None = the synthetic data set
    synth_dir: Path = Path("data/synthetic")
    alt_dir: Path = Path("data/synthetic-alt")
    # Rendered by model_export.data.heldout, which shares no code with the training
    # renderer: evaluation only, never training or choosing a model.
    heldout_dir: Path = Path("data/heldout")
    cache_dir: Path = Path("data/cache")
    seed: int = 0
    # The most epochs the LSTM may train in `make model` (it stops 8 after its best;
    # docs/tuning-log.md has the timings and what more epochs gave).
    epochs: int = 25
    num_frames: int = 16
    height: int = 128
    width: int = 128
    per_class: int = 150
    alt_per_class: int = 25
    heldout_per_class: int = 25
    workers: int = 2
    progress: bool = True
    # The motion stream (weight-free measurements between frames) beside the encoder's
    # features, for every architecture alike (model_export.nets.classifier).
    motion: bool = True
    name: str = "vidlstm"
    # Splits of a user's folder: official lists (train, test[, val]; UCF101's format), and
    # the rule that keeps the clips of one source video together ("auto": UCF101/HMDB51's
    # `_g<group>_` when every file name has it; None: no groups).
    split_files: tuple[Path, ...] = ()
    group_pattern: str | None = "auto"
    # Training: continue a stopped run from OUT/checkpoints/<model>.state.pt, and where
    # to train ("auto": CUDA when torch sees one).
    resume: bool = False
    device: str = "auto"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def train_dir(self) -> Path:
        return self.data if self.data is not None else self.synth_dir


def model_config(cfg: RunConfig, arch: str, num_classes: int) -> ModelConfig:
    """The model a run trains for ``arch``: the CNN works at about 64 px a side,
    and larger frames feed the motion stream's fovea."""
    side = min(cfg.height, cfg.width)
    pool = max(1, side // STREAM_SIZE)
    config = ModelConfig(
        num_classes=num_classes,
        height=cfg.height,
        width=cfg.width,
        pool=pool,
        fovea=side // 4 if pool > 1 else 0,
        motion=cfg.motion,
    )
    return replace(config, arch="lstm" if arch == "lstm" else "mean_pool")
