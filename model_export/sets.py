"""Which data a run reads: the training folder, and the sets rendered apart from it.

The generalisation sets (synthetic runs only) are ``alt``, the training
renderer's other style, and ``heldout``, a renderer that shares no code with
it. They are for evaluation only: nothing is trained or chosen on them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from model_export.config import RunConfig
from model_export.data.dataset import Decoder, VideoDataset, load_dataset


def generalisation_sets(cfg: RunConfig, data: VideoDataset) -> dict[str, VideoDataset]:
    """The sets rendered apart from the training data that exist (synthetic runs only):
    ``alt`` (the training renderer's other style) and ``heldout`` (a renderer sharing no
    code with it). Evaluation only: nothing is trained or chosen on them."""
    if cfg.data is not None:
        return {}
    sets = {}
    for name, folder in (("alt", cfg.alt_dir), ("heldout", cfg.heldout_dir)):
        if folder.is_dir():
            other = load_folder(cfg, folder)
            if other.labels != data.labels:
                raise ValueError(f"{folder} has labels {other.labels}, not {data.labels}")
            sets[name] = other
    return sets


def evaluation_sets(
    cfg: RunConfig, data: VideoDataset
) -> dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]]:
    """``name -> (clips (n, T, H, W, 3) uint8, targets)``: the test split, then each
    generalisation set that exists."""
    sets = {"test": data.split("test", serving=True)}
    for name, other in generalisation_sets(cfg, data).items():
        sets[name] = other.split("all", serving=True)
    return sets


def load_folder(cfg: RunConfig, root: Path, *, decoder: Decoder | None = None) -> VideoDataset:
    """``root`` decoded and split as ``cfg`` says; its split lists and grouping apply to
    the training folder only (the generalisation sets are evaluated whole)."""
    if cfg.data is None and not root.is_dir():
        raise FileNotFoundError(f"no data folder {root}: run `python -m model_export synth`")
    training = root == cfg.train_dir
    return load_dataset(
        root,
        num_frames=cfg.num_frames,
        height=cfg.height,
        width=cfg.width,
        cache_dir=cfg.cache_dir,
        seed=cfg.seed,
        workers=cfg.workers,
        progress=cfg.progress,
        split_files=cfg.split_files if training else (),
        group_pattern=cfg.group_pattern if training else None,
        decoder=decoder,
    )
