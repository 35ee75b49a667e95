"""The experiment: what memory of order buys, with and without the motion stream.

``python -m model_export experiment`` (``make experiment``) trains, on one split,
{LSTM, mean pool} x {motion off, motion on} with the same per-step inputs for
both (:meth:`~model_export.nets.classifier.VideoClassifier.step_inputs`), fits
the linear SVM on the LSTM's per-step inputs pooled over time, scores the LSTM
on time-shuffled frames too, and evaluates every model on the test split and
on each generalisation set (data rendered apart from training). Every model gets
the same training loop and budget. :mod:`model_export.evaluation.experiment_page`
writes the rows as ``experiment.json`` and a page with tables and plots.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from model_export.config import RunConfig, model_config
from model_export.data.augment import default_config
from model_export.epochs import TrainConfig, seed_everything
from model_export.evaluation.baselines import shuffled_frames
from model_export.evaluation.experiment_page import Row
from model_export.evaluation.svm import extract_features, fit_svm, predict
from model_export.nets.classifier import VideoClassifier, build_model
from model_export.sets import evaluation_sets, load_folder
from model_export.train import evaluate, fit

log = logging.getLogger(__name__)

MODELS = ("lstm", "mean_pool", "svm", "lstm_shuffled")
Clips = npt.NDArray[np.uint8]
Targets = npt.NDArray[np.int64]
Split = tuple[Clips, Targets]


def run_experiment(cfg: RunConfig) -> list[Row]:
    """Train and score every model of the experiment; returns its rows."""
    data = load_folder(cfg, cfg.train_dir)
    sets = evaluation_sets(cfg, data)
    train, val = data.view("train"), data.view("val", serving=True)
    augment = default_config(data.labels, num_frames=cfg.num_frames)
    config = TrainConfig(epochs=cfg.epochs, seed=cfg.seed, progress=cfg.progress, device=cfg.device)
    rows: list[Row] = []
    for motion in (False, True):
        run = replace(cfg, motion=motion)
        trained: dict[str, VideoClassifier] = {}
        for arch in ("lstm", "mean_pool"):
            seed_everything(cfg.seed)
            model = build_model(model_config(run, arch, len(data.labels)))
            start = time.perf_counter()
            name = f"{arch}, motion {'on' if motion else 'off'}"
            fit(model, train, val, augment=augment, config=config, name=name)
            log.info("%s trained in %.0f s", name, time.perf_counter() - start)
            trained[arch] = model
            rows += [
                _row(arch, motion, split, _accuracy(model, *xy), xy) for split, xy in sets.items()
            ]
        lstm = trained["lstm"]
        rows += [
            _row(
                "lstm_shuffled",
                motion,
                split,
                _accuracy(lstm, shuffled_frames(x, cfg.seed), y),
                (x, y),
            )
            for split, (x, y) in sets.items()
        ]
        served_clips, served_targets = data.view("train", serving=True)
        svm = fit_svm(extract_features(lstm, served_clips), served_targets, seed=cfg.seed)
        for split, (x, y) in sets.items():
            correct = predict(svm, extract_features(lstm, x)) == y
            rows.append(
                _row("svm", motion, split, float(correct.mean()) if len(y) else 0.0, (x, y))
            )
    return rows


def _accuracy(model: VideoClassifier, clips: Clips, targets: Targets) -> float:
    return evaluate(model, clips, targets).accuracy


def _row(model: str, motion: bool, split: str, accuracy: float, xy: Split) -> Row:
    log.info("%s, motion %s, %s: %.4f", model, "on" if motion else "off", split, accuracy)
    return Row(model=model, motion=motion, split=split, accuracy=round(accuracy, 4), n=len(xy[1]))
