"""Report: ``report.md`` with PNG plots and ``report.json`` comparing the models.

``report.json`` always has this shape (more keys are added beside it)::

    {"models": {"lstm": {"test_accuracy", "macro_f1", "ms_per_clip"},
                "mean_pool": {"test_accuracy", "macro_f1"},
                "svm": {"test_accuracy", "macro_f1"}},
     "lstm_shuffled_frames_accuracy": float,
     "skipped_files": [{"path", "reason"}, ...]}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from model_export.data.cache import SkippedFile
from model_export.evaluation.scores import ModelResult, accuracy_interval

log = logging.getLogger(__name__)

TITLES = {"lstm": "CNN + LSTM", "mean_pool": "CNN + mean pool", "svm": "Linear SVM"}
OTHER_TITLES = {"alt": "alt-style", "heldout": "held-out renderer"}
METHOD = (
    "Every video is decoded once through the service's own decode path; the clips a "
    "model sees at test time are exactly the frames the service would sample. All "
    "three models share one split and the same per-frame CNN design (CoordConv input, "
    "patchify stem, spatial-softmax keypoints and a flattened low-resolution map, so "
    "position survives).",
    "",
    "- **CNN + LSTM**: per step, the frame's CNN features and, with the motion stream "
    "on (`motion` below), weight-free measurements between frames (the features' change "
    "since the previous and the first frame; where the CNN's maps changed since the first "
    "frame; the shift, scale and turn that best explain the change of the maps and of the "
    "half-size pixels; a coarse Lucas-Kanade optical-flow field; the same inside a "
    "full-resolution window where the clip changes most) -> LSTM -> linear -> softmax.",
    "- **CNN + mean pool**: exactly the same per-step inputs, averaged over time "
    "(no memory of order) -> linear -> softmax, trained by the same loop.",
    "- **Linear SVM**: the trained LSTM model's per-step inputs, mean-pooled over time "
    "and standardised, one-vs-rest linear SVM.",
    "",
    "Training: AdamW, one-cycle schedule (warm-up then cosine decay), "
    "early stopping on validation accuracy (best weights kept); augmentation: temporal "
    "jitter, mild crop/shift/tilt, colour jitter, and label-aware horizontal/vertical "
    "flips and time reversal (derived from the label names).",
)


def build_report(
    results: Mapping[str, ModelResult],
    *,
    labels: Sequence[str],
    skipped: Sequence[SkippedFile],
    context: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``report.json`` document; ``context`` adds run facts (geometry, data, timings)."""
    models: dict[str, dict[str, Any]] = {}
    for name, r in results.items():
        entry: dict[str, Any] = {
            "test_accuracy": round(r.test.accuracy, 4),
            "macro_f1": round(r.test.macro_f1, 4),
            "per_class_f1": r.test.per_class_f1,
            "confusion_matrix": r.test.confusion,
            "test_count": r.test.count,
            "test_accuracy_95ci": [
                round(v, 4) for v in accuracy_interval(r.test.accuracy, r.test.count)
            ],
            "parameters": r.parameters,
        }
        if r.ms_per_clip:
            entry["ms_per_clip"] = r.ms_per_clip.get(1, min(r.ms_per_clip.values()))
            entry["ms_per_clip_by_batch"] = {str(b): ms for b, ms in r.ms_per_clip.items()}
        for key, scores in r.extra.items():
            entry[f"{key}_accuracy"] = round(scores.accuracy, 4)
            entry[f"{key}_macro_f1"] = round(scores.macro_f1, 4)
        if r.history is not None:
            entry["best_epoch"] = int(r.history.get("best_epoch", -1)) + 1
            entry["epochs_run"] = len(r.history.get("val_accuracy", []))
        if r.note:
            entry["note"] = r.note
        models[name] = entry
    shuffled = results["lstm"].extra.get("shuffled") if "lstm" in results else None
    return {
        "models": models,
        "lstm_shuffled_frames_accuracy": round(shuffled.accuracy, 4) if shuffled else None,
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in skipped],
        "labels": list(labels),
        **context,
    }


def write_report(
    out: Path,
    results: Mapping[str, ModelResult],
    *,
    labels: Sequence[str],
    skipped: Sequence[SkippedFile],
    context: Mapping[str, Any],
) -> Path:
    """Write ``out/report.json``, ``out/report.md`` and ``out/plots/*.png``; returns the .md."""
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    doc = build_report(results, labels=labels, skipped=skipped, context=context)
    _atomic_write(out / "report.json", json.dumps(doc, indent=2) + "\n")
    for name, r in results.items():
        plot_confusion(plots / f"confusion_{name}.png", r, labels)
    curves = {n: r.history for n, r in results.items() if r.history is not None}
    if curves:
        plot_curves(plots / "training_curves.png", curves)
    plot_comparison(plots / "comparison.png", doc)
    md = out / "report.md"
    _atomic_write(md, _markdown(doc, results, labels))
    log.info("report written to %s", md)
    return md


# -- plots -------------------------------------------------------------------------


def plot_confusion(path: Path, result: ModelResult, labels: Sequence[str]) -> None:
    matrix = np.asarray(result.test.confusion, dtype=np.float64)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if matrix[i, j]:
                colour = "white" if rows[i, j] > 0.55 else "black"
                ax.text(j, i, f"{int(matrix[i, j])}", ha="center", va="center", color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = TITLES.get(result.name, result.name)
    ax.set_title(f"{title}: test accuracy {result.test.accuracy:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(path: Path, histories: Mapping[str, Mapping[str, Any]]) -> None:
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for (name, h), colour in zip(
        histories.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False
    ):
        epochs = np.arange(1, len(h["train_loss"]) + 1)
        title = TITLES.get(name, name)
        loss_ax.plot(epochs, h["train_loss"], "--", color=colour, label=f"{title} train")
        loss_ax.plot(epochs, h["val_loss"], "-", color=colour, label=f"{title} val")
        acc_ax.plot(epochs, h["train_accuracy"], "--", color=colour, label=f"{title} train")
        acc_ax.plot(epochs, h["val_accuracy"], "-", color=colour, label=f"{title} val")
        best = int(h.get("best_epoch", -1))
        if best >= 0:
            acc_ax.plot(best + 1, h["val_accuracy"][best], "o", color=colour)
    loss_ax.set(xlabel="epoch", ylabel="loss (train: augmented, smoothed)", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy (dot: kept weights)")
    acc_ax.set_ylim(0, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_comparison(path: Path, doc: Mapping[str, Any]) -> None:
    models = doc["models"]
    names = list(models)
    series = [("test accuracy", "test_accuracy"), ("test macro F1", "macro_f1")]
    for key, title in OTHER_TITLES.items():
        if any(f"{key}_accuracy" in m for m in models.values()):
            series.append((f"{title} accuracy", f"{key}_accuracy"))
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    width = 0.8 / len(series)
    for k, (label, key) in enumerate(series):
        values = [models[n].get(key, np.nan) for n in names]
        x = np.arange(len(names)) + (k - (len(series) - 1) / 2) * width
        errors = None
        if key == "test_accuracy":  # the Wilson 95% interval: how much the figure could move
            ci = np.array(
                [
                    models[n].get("test_accuracy_95ci", (v, v))
                    for n, v in zip(names, values, strict=True)
                ]
            )
            errors = np.abs(ci.T - np.array(values))
        bars = ax.bar(x, values, width, yerr=errors, capsize=3, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    chance = 1.0 / max(len(doc.get("labels", [])), 1)
    ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    shuffled = doc.get("lstm_shuffled_frames_accuracy")
    if shuffled is not None:
        ax.axhline(shuffled, color="tab:red", ls="--", lw=1, label="LSTM, frames shuffled")
    ax.set_xticks(range(len(names)), [TITLES.get(n, n) for n in names])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.set_title("Models on the same split")
    ax.legend(fontsize=8, loc="upper right", ncols=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- markdown ----------------------------------------------------------------------


def _markdown(
    doc: Mapping[str, Any], results: Mapping[str, ModelResult], labels: Sequence[str]
) -> str:
    models = doc["models"]
    others = [k for k in ("alt", "heldout") if any(f"{k}_accuracy" in m for m in models.values())]
    lines = ["# vidlstm: model report", ""]
    skip = ("models", "skipped_files", "labels", "lstm_shuffled_frames_accuracy")
    facts = {k: v for k, v in doc.items() if k not in skip}
    lines += [f"- **{k.replace('_', ' ')}**: {_fmt(v)}" for k, v in facts.items()]
    method = list(METHOD)
    if doc.get("encoder", "cnn") != "cnn":
        method[0] = (
            f"The per-frame encoder is the frozen ONNX model `{doc['encoder']}` (sha256 "
            f"`{str(doc.get('encoder_sha256', ''))[:16]}`...), run once over every decoded frame; "
            "the heads below train on its cached features instead of the built-in CNN's. "
            + method[0]
        )
    lines += ["", "## Method", "", *method, "", "## Models", ""]
    header = "| model | test accuracy (95% interval) | macro F1 |"
    rule = "|---|---|---|"
    for k in others:
        header, rule = header + f" {OTHER_TITLES[k]} accuracy |", rule + "---|"
    header += " parameters | ms/clip (batch 1) | ms/clip (batch 8) |"
    rule += "---|---|---|"
    lines += [header, rule]
    for name, m in models.items():
        ms = m.get("ms_per_clip_by_batch", {})
        low, high = m.get("test_accuracy_95ci", (np.nan, np.nan))
        row = (
            f"| {TITLES.get(name, name)} | {m['test_accuracy']:.3f} ({low:.3f}-{high:.3f}) "
            f"| {m['macro_f1']:.3f} |"
        )
        for k in others:
            row += f" {_fmt(m.get(f'{k}_accuracy'))} |"
        row += f" {m['parameters']:,} | {_fmt(ms.get('1'))} | {_fmt(ms.get('8'))} |"
        lines.append(row)
    lines += [
        "",
        f"LSTM with the frames of each test clip shuffled in time: "
        f"accuracy **{_fmt(doc['lstm_shuffled_frames_accuracy'])}**.",
        "",
        "![comparison](plots/comparison.png)",
        "",
        "![training curves](plots/training_curves.png)",
        "",
        "## Per-class F1",
        "",
        "| class | " + " | ".join(TITLES.get(n, n) for n in models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for label in labels:
        cells = " | ".join(f"{models[n]['per_class_f1'][label]:.3f}" for n in models)
        lines.append(f"| {label} | {cells} |")
    lines += ["", "## Confusion matrices", ""]
    for name, r in results.items():
        lines += [f"### {TITLES.get(name, name)}", ""]
        if r.note:
            lines += [r.note, ""]
        lines += [f"![confusion {name}](plots/confusion_{name}.png)", ""]
    skipped = doc["skipped_files"]
    lines += ["## Skipped files", ""]
    lines += [f"- `{s['path']}`: {s['reason']}" for s in skipped] or ["None."]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.0f}"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return str(value)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
