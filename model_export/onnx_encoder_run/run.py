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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort

from model_export.checkpoint import write_results
from model_export.config import RunConfig
from model_export.data.augment import default_config
from model_export.data.cache import OVERSAMPLE, serving_batches
from model_export.data.dataset import Geometry, VideoDataset
from model_export.data.features import PLAIN, FrameFeatures, allowed_flips, decode_features
from model_export.data.folder import VideoFile
from model_export.data.store import Rows, RowView
from model_export.epochs import History, seed_everything
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
    LSTM_PATIENCE,
    MEAN_POOL_EPOCHS,
    MODEL_FILE,
    RESULTS,
    data_results,
    package_version,
    resumable,
    timed,
    training_config,
    write_splits,
)
from model_export.sets import generalisation_sets, load_folder

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
    encoder = OnnxEncoder(info)
    made: list[FrameFeatures] = []

    def decode(
        root: Path, files: Sequence[VideoFile], labels: tuple[str, ...], geometry: Geometry
    ) -> tuple[Rows, dict[str, Any]]:
        """Each file straight into the encoder's features (of every mirror the labels
        allow): the cache holds no pixels."""
        flips = allowed_flips(default_config(labels, num_frames=cfg.num_frames))
        features, index = decode_features(
            root, files, geometry, encoder, cache_dir=cfg.cache_dir, flips=flips,
            workers=cfg.workers, progress=cfg.progress,
        )  # fmt: skip
        made.append(features)
        return features.views[PLAIN], index

    with timed(cfg, "features"):
        data = load_folder(frames_cfg, cfg.train_dir, decoder=decode)
    features = made[0]
    write_splits(cfg, data)
    augment = default_config(data.labels, num_frames=cfg.num_frames)
    train_rows, val_rows = data.splits["train"], data.splits["val"]
    val = (features.serving(val_rows), data.targets[val_rows])
    tc = training_config(cfg, patience=LSTM_PATIENCE)
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
                config=resumable(tc if arch == "lstm" else baseline_tc, cfg, f"{arch}_head"),
                name=arch,
                data_key=data.fingerprint,
            )
        save_head(cfg.checkpoints / f"{arch}_head.pt", head)
        heads[arch] = (head, history)
    models: dict[str, dict[str, Any]] = {}
    with timed(cfg, "svm"):
        models["svm"] = svm_baseline(features, data, seed=cfg.seed)
    sets = {"test": test_source(frames_cfg, data), **generalisation_sources(frames_cfg, data)}
    with timed(cfg, "export"):
        for name, (head, history) in heads.items():
            models[name] = export_and_score(cfg, info, head, data, sets, arch=name)
            models[name]["history"] = history.as_dict()
    results = {
        **data_results(cfg, data),
        **{f"{name}_size": sets[name].count for name in ("alt", "heldout") if name in sets},
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
    sets: dict[str, ClipSource],
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
        scored: dict[str, dict[str, Any]] = {}
        for name, source in sets.items():
            views: dict[str, Transform] = {name: lambda clips, _: clips}
            if name == "test" and arch == "lstm":
                views["shuffled"] = lambda clips, start: shuffled_frames(
                    clips, cfg.seed, first=start
                )
            scored |= _scores(session, source, views, data.labels)
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
    svm = fit_svm(features.pooled(train_rows), data.targets[train_rows], seed=seed)
    pooled = features.pooled(test_rows)
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


Clips = npt.NDArray[np.uint8]
Targets = npt.NDArray[np.int64]
Transform = Callable[[Clips, int], Clips]  # a batch and its first position -> what to score


@dataclass(frozen=True)
class ClipSource:
    """A set to score, read batch by batch (never whole): ``batches()`` yields ``(b, T, H,
    W, 3) uint8`` clips as the service decodes them and their ``(b,)`` targets."""

    count: int
    batches: Callable[[], Iterator[tuple[Clips, Targets]]]


def test_source(cfg: RunConfig, data: VideoDataset) -> ClipSource:
    """The test split's files decoded again at the served geometry (the cache holds
    features, not pixels)."""
    rows = data.splits["test"]
    files = [data.video_files[i] for i in rows]
    geometry = (cfg.num_frames, cfg.height, cfg.width, 1)

    def batches() -> Iterator[tuple[Clips, Targets]]:
        decoded = serving_batches(data.root, files, geometry, batch=SCORE_BATCH,
                                  workers=cfg.workers)  # fmt: skip
        for positions, clips in decoded:
            yield clips, data.targets[rows[positions]]

    return ClipSource(len(rows), batches)


def generalisation_sources(cfg: RunConfig, data: VideoDataset) -> dict[str, ClipSource]:
    """The sets rendered apart from the training data (synthetic runs), from their
    decoded-clip caches."""
    sources = {}
    for name, other in generalisation_sets(cfg, data).items():
        rows = np.sort(np.concatenate(list(other.splits.values())))
        view = RowView(other.clips, rows, frames=slice(1, None, OVERSAMPLE))
        targets = other.targets[rows]

        def batches(
            view: RowView = view, targets: Targets = targets
        ) -> Iterator[tuple[Clips, Targets]]:
            for i in range(0, len(view), SCORE_BATCH):
                yield view[i : i + SCORE_BATCH], targets[i : i + SCORE_BATCH]

        sources[name] = ClipSource(len(rows), batches)
    return sources


def _scores(
    session: ort.InferenceSession,
    source: ClipSource,
    views: dict[str, Transform],
    labels: tuple[str, ...],
) -> dict[str, dict[str, Any]]:
    """Scores of the composed file on each view of ``source``'s clips, in one pass."""
    predicted: dict[str, list[Targets]] = {name: [] for name in views}
    seen: list[Targets] = []
    start = 0
    for clips, targets in source.batches():
        for name, transform in views.items():
            batch = np.ascontiguousarray(transform(clips, start))
            (probs,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
            predicted[name].append(np.asarray(probs).argmax(axis=1).astype(np.int64))
        seen.append(targets)
        start += len(clips)
    truth = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    return {
        name: score(truth, np.concatenate(p) if p else np.zeros(0, np.int64), labels).as_dict()
        for name, p in predicted.items()
    }
