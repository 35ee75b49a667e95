"""The run with a pretrained ONNX encoder: data -> features -> heads -> composed files -> scores.

    load (frames at the encoder's size) -> extract_features (cached)
    -> fit the LSTM and the mean-pool heads -> SVM on the same pooled features
    -> compose, verify, score through the composed file, publish
    -> results.json in the shape :func:`model_export.pipeline.train_models` writes

so :func:`model_export.pipeline.write_run_report` writes the report as for
the built-in CNN. The LSTM's file is ``OUT/vidlstm.onnx``, the mean-pool
baseline's ``OUT/checkpoints/mean_pool.onnx``; every score comes from ONNX
Runtime on the composed file, fed the clips the service would decode.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from model_export.checkpoint import write_results
from model_export.config import RunConfig
from model_export.data.augment import default_config
from model_export.data.dataset import VideoDataset
from model_export.data.features import FrameFeatures, allowed_flips, extract_features
from model_export.evaluation.baselines import shuffled_frames
from model_export.evaluation.scores import score
from model_export.evaluation.svm import fit_svm, predict
from model_export.export import INPUT_NAME, OUTPUT_NAME, ModelMetadata
from model_export.nets.classifier import ARCHS, count_parameters
from model_export.nets.encoder_spec import EncoderInfo, EncoderSpec, describe
from model_export.nets.head import HeadConfig, TemporalHead, save_head
from model_export.nets.onnx_encoder import OnnxEncoder, open_session
from model_export.onnx_encoder_run.compose import publish, staged_composition
from model_export.onnx_encoder_run.train import fit
from model_export.pipeline import (
    MEAN_POOL_EPOCHS,
    MODEL_FILE,
    RESULTS,
    package_version,
    timed,
)
from model_export.sets import evaluation_sets, load_folder
from model_export.train import History, TrainConfig, seed_everything

log = logging.getLogger(__name__)

SCORE_BATCH = 16


def train_and_export_with_onnx_encoder(cfg: RunConfig, spec: EncoderSpec) -> dict[str, Any]:
    """Train the heads on ``spec``'s features, export both composed files, score them;
    returns (and saves) the results. ``cfg.height``/``cfg.width`` give way to the encoder's."""
    info = spec.resolve()
    log.info("encoder %s", describe(info))
    pre = info.preprocessing
    if (cfg.height, cfg.width) != (pre.height, pre.width):
        log.info("frames are decoded at the encoder's %dx%d", pre.height, pre.width)
    frames_cfg = replace(cfg, height=pre.height, width=pre.width)
    with timed(cfg, "decode"):
        data = load_folder(frames_cfg, cfg.train_dir)
    augment = default_config(data.labels, num_frames=cfg.num_frames)
    with timed(cfg, "features"):
        features = extract_features(
            data,
            OnnxEncoder(info),
            cache_dir=cfg.cache_dir,
            flips=allowed_flips(augment),
            progress=cfg.progress,
        )
    train_rows, val_rows = data.splits["train"], data.splits["val"]
    val = (features.serving(val_rows), data.targets[val_rows])
    tc = TrainConfig(epochs=cfg.epochs, seed=cfg.seed, progress=cfg.progress)
    baseline_tc = replace(tc, epochs=min(cfg.epochs, MEAN_POOL_EPOCHS), patience=4)
    heads: dict[str, tuple[TemporalHead, History]] = {}
    for arch in ARCHS:
        seed_everything(cfg.seed)
        config = HeadConfig(features.feature_dim, len(data.labels), arch=arch)
        head = TemporalHead(config)
        with timed(cfg, f"train_{arch}"):
            history = fit(
                head,
                features,
                (train_rows, data.targets[train_rows]),
                val,
                augment=augment,
                config=tc if arch == "lstm" else baseline_tc,
                name=arch,
            )
        save_head(cfg.checkpoints / f"{arch}_head.pt", head)
        heads[arch] = (head, history)
    models: dict[str, dict[str, Any]] = {}
    with timed(cfg, "svm"):
        models["svm"] = svm_baseline(features, data, seed=cfg.seed)
    sets = evaluation_sets(frames_cfg, data)
    with timed(cfg, "export"):
        for name, (head, history) in heads.items():
            models[name] = export_and_score(cfg, info, head, data, sets, arch=name)
            models[name]["history"] = history.as_dict()
    results = {
        "labels": list(data.labels),
        "data": str(cfg.train_dir),
        "data_fingerprint": data.fingerprint,
        "skipped": [asdict(s) for s in data.skipped],
        "split_sizes": {k: len(v) for k, v in data.splits.items()},
        **{f"{name}_size": len(sets[name][1]) for name in ("alt", "heldout") if name in sets},
        "geometry": {"num_frames": cfg.num_frames, "height": pre.height, "width": pre.width},
        "seed": cfg.seed,
        "motion": False,
        "encoder": info.name,
        "encoder_sha256": info.sha256,
        "encoder_input": pre.as_dict(),
        "onnx_test_accuracy": models["lstm"]["test"]["accuracy"],
        "models": {name: models[name] for name in ("lstm", "mean_pool", "svm")},
    }
    write_results(cfg.checkpoints / RESULTS, results)
    return results


def export_and_score(
    cfg: RunConfig,
    info: EncoderInfo,
    head: TemporalHead,
    data: VideoDataset,
    sets: dict[str, tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]],
    *,
    arch: str,
) -> dict[str, Any]:
    """Compose and verify ``head`` with the encoder, score every set through the composed
    file, then publish it with those metrics; returns the results entry."""
    target = cfg.out / MODEL_FILE if arch == "lstm" else cfg.checkpoints / f"{arch}.onnx"
    t = cfg.num_frames
    lengths = sorted({max(1, t // 2), t, 2 * t})
    with staged_composition(
        info, head, directory=target.parent, lengths=lengths, seed=cfg.seed
    ) as (proto, staged):
        session = open_session(staged)
        scored = {name: _scores(session, *clips, data.labels) for name, clips in sets.items()}
        if arch == "lstm":
            clips, targets = sets["test"]
            scored["shuffled"] = _scores(
                session, shuffled_frames(clips, cfg.seed), targets, data.labels
            )
        test = scored.pop("test")
        metrics: dict[str, Any] = {
            "test_accuracy": round(test["accuracy"], 4),
            "test_macro_f1": round(test["macro_f1"], 4),
            "test_count": test["count"],
        }
        for name, key in (("alt", "alt_style_accuracy"), ("heldout", "heldout_accuracy")):
            if name in scored:
                metrics[key] = round(scored[name]["accuracy"], 4)
        pre = info.preprocessing
        metadata = ModelMetadata(
            labels=list(data.labels),
            num_frames=t,
            height=pre.height,
            width=pre.width,
            name=cfg.name if arch == "lstm" else f"{cfg.name}-{arch}",
            version=package_version(),
            data_fingerprint=data.fingerprint,
            metrics=metrics,
            architecture={**info.summary(), **head.config.summary()},
        )
        publish(proto, target, metadata)
    return {
        "test": test,
        "parameters": count_parameters(head) + encoder_parameters(info),
        "extra": scored,
        "note": f"{info.name} (frozen) + {arch} head trained on cached features",
    }


def svm_baseline(features: FrameFeatures, data: VideoDataset, *, seed: int) -> dict[str, Any]:
    """A linear SVM on the heads' per-step inputs (the encoder's features of the serving
    frames), mean-pooled over time."""
    train_rows, test_rows = data.splits["train"], data.splits["test"]
    svm = fit_svm(features.serving(train_rows).mean(axis=1), data.targets[train_rows], seed=seed)
    pooled = features.serving(test_rows).mean(axis=1)
    start = time.perf_counter()
    predictions = predict(svm, pooled)
    predict_ms = 1000 * (time.perf_counter() - start) / max(len(pooled), 1)
    return {
        "test": score(data.targets[test_rows], predictions, data.labels).as_dict(),
        "parameters": int(sum(np.size(c) for c in (svm[-1].coef_, svm[-1].intercept_))),
        "predict_ms_per_clip": predict_ms,
        "extra": {},
        "note": "Linear SVM on the encoder's features of the served frames, mean-pooled.",
    }


def encoder_parameters(info: EncoderInfo) -> int:
    """Numbers stored in the encoder file's initialisers (its weights, frozen)."""
    proto = onnx.load(str(info.path), load_external_data=False)
    return int(sum(np.prod(t.dims, dtype=np.int64) for t in proto.graph.initializer))


def _scores(
    session: ort.InferenceSession,
    clips: npt.NDArray[np.uint8],
    targets: npt.NDArray[np.int64],
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """Scores of the composed file on ``(n, T, H, W, 3) uint8`` clips."""
    probs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(clips[i : i + SCORE_BATCH])})[
            0
        ]
        for i in range(0, len(clips), SCORE_BATCH)
    ]
    predictions = np.concatenate(probs).argmax(axis=1) if probs else np.zeros(0, np.int64)
    return score(targets, predictions.astype(np.int64), labels).as_dict()
