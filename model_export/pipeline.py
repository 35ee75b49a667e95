"""Pipeline: the stages of ``python -m model_export`` and what passes between them.

    synthesize -> train_models -> export_model (verify) -> write_run_report

Each stage reads what the previous one left under ``out/`` (checkpoints and
``out/checkpoints/results.json``), so any stage can be re-run on its own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from model_export.checkpoint import load_checkpoint, read_results, save_checkpoint, write_results
from model_export.config import RunConfig, model_config
from model_export.data.augment import default_config
from model_export.data.cache import SkippedFile
from model_export.data.dataset import VideoDataset
from model_export.epochs import TrainConfig, seed_everything
from model_export.evaluation.baselines import ShuffledFrames, score_model, svm_baseline
from model_export.evaluation.scores import ModelResult, Scores, onnx_latency, score
from model_export.export import ModelMetadata, export_onnx, verify
from model_export.nets.classifier import VideoClassifier, build_model, count_parameters
from model_export.report import write_report
from model_export.sets import generalisation_sets, load_folder
from model_export.train import evaluate, fit

log = logging.getLogger(__name__)

MODEL_FILE = "vidlstm.onnx"
RESULTS = "results.json"
# The mean-pool baseline's val accuracy is flat from its 6th epoch (0.943 at 6, 0.938
# at 12 on the default set); the LSTM stops 8 epochs after its best val accuracy (its
# best was epoch 11 of 25 and nothing later beat it: the same weights, 6 epochs sooner).
MEAN_POOL_EPOCHS = 6
LSTM_PATIENCE = 8


# -- synthesize ----------------------------------------------------------------------


def synthesize(cfg: RunConfig) -> None:
    """The default data set, its ``alt``-style set and the held-out renderer's set
    (evaluation only), each cached by its manifest."""
    # Only this stage needs the renderers.
    from model_export.data.heldout import generate as generate_heldout  # noqa: PLC0415
    from model_export.data.synth import generate  # noqa: PLC0415

    with timed(cfg, "synth"):
        generate(
            cfg.synth_dir,
            seed=cfg.seed,
            per_class=cfg.per_class,
            workers=cfg.workers,
            progress=cfg.progress,
        )
        generate(
            cfg.alt_dir,
            seed=cfg.seed + 1_000_003,
            per_class=cfg.alt_per_class,
            split=(0.0, 0.0, 1.0),
            style="alt",
            workers=cfg.workers,
            progress=cfg.progress,
        )
        generate_heldout(
            cfg.heldout_dir,
            seed=cfg.seed + 2_000_003,
            per_class=cfg.heldout_per_class,
            workers=cfg.workers,
            progress=cfg.progress,
        )


# -- train ---------------------------------------------------------------------------


def training_config(cfg: RunConfig, **settings: Any) -> TrainConfig:
    """The run's optimisation settings: its epochs, seed and device."""
    return TrainConfig(
        epochs=cfg.epochs, seed=cfg.seed, progress=cfg.progress, device=cfg.device, **settings
    )


def resumable(config: TrainConfig, cfg: RunConfig, name: str) -> TrainConfig:
    """``config`` writing its state after every epoch to ``OUT/checkpoints/NAME.state.pt``,
    and going on from it with ``--resume``."""
    return replace(config, state_path=cfg.checkpoints / f"{name}.state.pt", resume=cfg.resume)


def train_models(cfg: RunConfig) -> dict[str, Any]:
    """Train the LSTM and the mean-pool CNN, fit the SVM, score all; save under ``out``."""
    with timed(cfg, "decode"):
        data = load_folder(cfg, cfg.train_dir)
        others = generalisation_sets(cfg, data)
    write_splits(cfg, data)
    # Views read the cache a batch at a time: memory holds batches, never a split.
    train, val = data.view("train"), data.view("val", serving=True)
    test_clips, test_targets = data.view("test", serving=True)
    augment = default_config(data.labels, num_frames=cfg.num_frames)
    log.info("augmentation mirrors: h %s, v %s, time %s", augment.hflip, augment.vflip,
             augment.reverse)  # fmt: skip
    tc = training_config(cfg, patience=LSTM_PATIENCE)
    # The baseline cannot see order, so it plateaus within a few epochs; a shorter budget
    # (same loop, same early stopping) keeps `all` inside its time limit.
    baseline_tc = replace(tc, epochs=min(cfg.epochs, MEAN_POOL_EPOCHS), patience=4)
    models: dict[str, dict[str, Any]] = {}
    trained: dict[str, VideoClassifier] = {}
    for arch in ("lstm", "mean_pool"):
        seed_everything(cfg.seed)
        model = build_model(model_config(cfg, arch, len(data.labels)))
        with timed(cfg, f"train_{arch}"):
            config = resumable(tc if arch == "lstm" else baseline_tc, cfg, arch)
            history = fit(model, train, val, augment=augment, config=config, name=arch,
                          data_key=data.fingerprint)  # fmt: skip
        trained[arch] = model
        test = evaluate(model, test_clips, test_targets)
        entry: dict[str, Any] = {
            "test": score(test_targets, test.predictions, data.labels).as_dict(),
            "history": history.as_dict(),
            "parameters": count_parameters(model),
            "extra": {},
        }
        if arch == "lstm":
            shuffled = ShuffledFrames(test_clips, cfg.seed)
            entry["extra"]["shuffled"] = score_model(model, shuffled, test_targets, data.labels)
        for name, other in others.items():
            entry["extra"][name] = score_model(model, *other.view("all", serving=True), data.labels)
        models[arch] = entry
        save_checkpoint(cfg.checkpoints / f"{arch}.pt", model)
    with timed(cfg, "svm"):
        models["svm"] = svm_baseline(
            trained["lstm"],
            data,
            others,
            test_clips=test_clips,
            test_targets=test_targets,
            seed=cfg.seed,
        )
    results = {
        **data_results(cfg, data),
        **{f"{name}_size": len(other.view("all")[1]) for name, other in others.items()},
        "geometry": {"num_frames": cfg.num_frames, "height": cfg.height, "width": cfg.width},
        "seed": cfg.seed,
        "motion": cfg.motion,
        "encoder": "cnn",
        "models": models,
    }
    write_results(cfg.checkpoints / RESULTS, results)
    return results


def data_results(cfg: RunConfig, data: VideoDataset) -> dict[str, Any]:
    """What results.json says of the data a run trained on, whichever the encoder."""
    return {
        "labels": list(data.labels),
        "data": str(cfg.train_dir),
        "data_fingerprint": data.fingerprint,
        "skipped": [asdict(s) for s in data.skipped],
        "split_sizes": {k: len(v) for k, v in data.splits.items()},
    }


def write_splits(cfg: RunConfig, data: VideoDataset) -> Path:
    """``OUT/splits.json``: every file of each split with its label and group."""
    path = cfg.out / "splits.json"
    write_results(path, data.splits_document())
    return path


# -- export --------------------------------------------------------------------------


def export_model(cfg: RunConfig) -> Path:
    """``out/vidlstm.onnx`` (verified against PyTorch, then scored through ONNX Runtime)."""
    results = read_results(cfg.checkpoints / RESULTS)
    labels = results["labels"]
    geometry = results["geometry"]
    lstm_entry = results["models"]["lstm"]
    metrics = {
        "test_accuracy": round(lstm_entry["test"]["accuracy"], 4),
        "test_macro_f1": round(lstm_entry["test"]["macro_f1"], 4),
        "test_count": lstm_entry["test"]["count"],
    }
    for name, key in (("alt", "alt_style_accuracy"), ("heldout", "heldout_accuracy")):
        if name in lstm_entry["extra"]:
            metrics[key] = round(lstm_entry["extra"][name]["accuracy"], 4)
    with timed(cfg, "export"):
        for arch in ("lstm", "mean_pool"):
            model = load_checkpoint(cfg.checkpoints / f"{arch}.pt")
            meta = ModelMetadata(
                labels=labels,
                name=cfg.name if arch == "lstm" else f"{cfg.name}-{arch}",
                version=package_version(),
                data_fingerprint=results["data_fingerprint"],
                metrics=metrics if arch == "lstm" else {"test_accuracy": _acc(results, arch)},
                **geometry,
            )
            target = cfg.out / MODEL_FILE if arch == "lstm" else cfg.checkpoints / f"{arch}.onnx"
            export_onnx(model, target, metadata=meta, seed=cfg.seed)
    return cfg.out / MODEL_FILE


def _acc(results: dict[str, Any], arch: str) -> float:
    return round(float(results["models"][arch]["test"]["accuracy"]), 4)


def verify_model(cfg: RunConfig) -> float:
    """Test accuracy of the exported file through ONNX Runtime, on served frames."""
    import onnxruntime as ort  # noqa: PLC0415

    path = cfg.out / MODEL_FILE
    data = load_folder(cfg, cfg.train_dir)
    clips, targets = data.view("test", serving=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs = np.concatenate(
        [session.run(None, {"frames": clips[i : i + 32]})[0] for i in range(0, len(clips), 32)]
    )
    accuracy = float((probs.argmax(1) == targets).mean())
    model = load_checkpoint(cfg.checkpoints / "lstm.pt")
    verify(model, path, lengths=(cfg.num_frames,), seed=cfg.seed + 1)
    log.info("%s: test accuracy through ONNX Runtime %.4f", path, accuracy)
    return accuracy


# -- report --------------------------------------------------------------------------


def write_run_report(cfg: RunConfig, *, onnx_accuracy: float | None = None) -> Path:
    """``out/report.md`` + ``out/report.json`` from the saved results and exported files."""
    results = read_results(cfg.checkpoints / RESULTS)
    labels = results["labels"]
    latency = {
        "lstm": onnx_latency(cfg.out / MODEL_FILE),
        "mean_pool": onnx_latency(cfg.checkpoints / "mean_pool.onnx"),
    }
    svm_ms = results["models"]["svm"].get("predict_ms_per_clip", 0.0)
    # The SVM's features are the encoder + mean pool: the mean-pool graph's cost.
    latency["svm"] = {b: round(ms + svm_ms, 3) for b, ms in latency["mean_pool"].items()}
    model_results = {
        name: ModelResult(
            name=name,
            test=Scores(**entry["test"]),
            parameters=int(entry["parameters"]),
            ms_per_clip=latency[name],
            history=entry.get("history"),
            extra={k: Scores(**v) for k, v in entry.get("extra", {}).items()},
            note=entry.get("note", ""),
        )
        for name, entry in results["models"].items()
    }
    context: dict[str, Any] = {
        "data": results["data"],
        "data_fingerprint": results["data_fingerprint"],
        "split_sizes": results["split_sizes"],
        "alt_style_videos": results.get("alt_size", 0),
        "heldout_videos": results.get("heldout_size", 0),
        "geometry": results["geometry"],
        "seed": results["seed"],
        "motion": results.get("motion", True),
        "encoder": results.get("encoder", "cnn"),
        "model_file": str(cfg.out / MODEL_FILE),
        "onnx_test_accuracy": onnx_accuracy,
        "latency_note": "ONNX Runtime CPU, 2 threads, median of 20 runs on random clips",
        "timings_s": {k: round(v, 1) for k, v in cfg.timings.items()},
    }
    skipped = [SkippedFile(**s) for s in results["skipped"]]
    return write_report(cfg.out, model_results, labels=labels, skipped=skipped, context=context)


# -- helpers -------------------------------------------------------------------------


def package_version() -> str:
    try:
        return importlib_metadata.version("vidlstm")
    except importlib_metadata.PackageNotFoundError:
        return "0.0.0+local"


@contextlib.contextmanager
def timed(cfg: RunConfig, stage: str) -> Iterator[None]:
    """Adds the wall time of the ``with`` block to ``cfg.timings[stage]``."""
    log.info("stage %s ...", stage)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    cfg.timings[stage] = cfg.timings.get(stage, 0.0) + elapsed
    log.info("stage %s done in %.1f s", stage, elapsed)
