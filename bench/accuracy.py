"""Accuracy of each decode mode: the trained model on its test split, through the serving path.

    python -m bench.accuracy [--model models/vidlstm.onnx] [--data data/synthetic/test]

Every mode decodes every test video with :func:`service.media.clip.decode_clip`
(the function the service's workers call) and runs the ONNX model on the
clips; the table gives accuracy, frames decoded and decode CPU time per video,
so the service's default (``VIDLSTM_DECODE_*``) can be chosen on evidence; then
the same modes' decode cost on the benchmark's W1 workload.
Writes ``bench/results/accuracy.json`` and ``accuracy.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from bench import workloads
from service.core.errors import VideoError
from service.media.clip import DecodeMode, decode_clip
from service.pipeline.inference import load_model

log = logging.getLogger("bench.accuracy")

REPO = Path(__file__).resolve().parents[1]
MODES = {
    "exact": DecodeMode(),
    "skip non-ref": DecodeMode(skip_nonref=True),
    "exact, no deblocking": DecodeMode(skip_loop_filter=True),
    "tolerance 0.25": DecodeMode(tolerance=0.25, skip_nonref=True),
    "tolerance 0.5": DecodeMode(tolerance=0.5, skip_nonref=True),
    "tolerance 0.5, no deblocking": DecodeMode(
        tolerance=0.5, skip_nonref=True, skip_loop_filter=True
    ),
}
Job = tuple[str, int, int, int, DecodeMode]


def _decode(job: Job) -> tuple[npt.NDArray[np.uint8] | None, int, float]:
    path, t, h, w, mode = job
    start = time.process_time()
    try:
        clip = decode_clip(
            path,
            num_frames=t,
            height=h,
            width=w,
            tolerance=mode.tolerance,
            skip_nonref=mode.skip_nonref,
            skip_loop_filter=mode.skip_loop_filter,
        )
    except VideoError:
        return None, 0, time.process_time() - start
    return clip.frames, clip.decoded_frames, time.process_time() - start


def videos(root: Path) -> list[tuple[Path, str]]:
    """``root/<label>/<file>`` pairs, sorted."""
    return sorted((p, p.parent.name) for p in root.glob("*/*") if p.is_file())


def evaluate(model_path: Path, root: Path, workers: int) -> dict[str, Any]:
    model = load_model(model_path, intra_op_threads=0)
    info = model.info
    labels = {name: i for i, name in enumerate(info.labels)}
    items = [(p, labels[label]) for p, label in videos(root) if label in labels]
    if not items:
        raise SystemExit(f"no labelled videos under {root}")
    targets = np.array([y for _, y in items])
    results: dict[str, Any] = {}
    reference: npt.NDArray[np.float32] | None = None  # the exact mode's probabilities
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for name, mode in MODES.items():
            jobs: list[Job] = [
                (str(p), info.num_frames, info.height, info.width, mode) for p, _ in items
            ]
            decoded = list(tqdm(pool.map(_decode, jobs, chunksize=4), total=len(jobs), desc=name))
            ok = [i for i, (clip, _, _) in enumerate(decoded) if clip is not None]
            clips = np.stack([c for c, _, _ in decoded if c is not None])
            probs = np.concatenate([model.run(clips[i : i + 16]) for i in range(0, len(clips), 16)])
            correct = probs.argmax(axis=1) == targets[ok]
            if reference is None:
                reference = probs
            same = len(probs) == len(reference)
            results[name] = {
                "mode": asdict(mode),
                "accuracy": float(correct.mean()),
                "correct": int(correct.sum()),
                "videos": len(ok),
                "failed": len(items) - len(ok),
                "frames_decoded_per_video": float(np.mean([d[1] for d in decoded])),
                "decode_cpu_ms_per_video": float(np.mean([d[2] for d in decoded]) * 1000),
                # Against the exact frames: how often the top class agrees, how far scores move.
                "same_top_as_exact": (
                    float(np.mean(probs.argmax(1) == reference.argmax(1))) if same else None
                ),
                "mean_abs_prob_change": (
                    float(np.mean(np.abs(probs - reference).sum(1) / 2)) if same else None
                ),
            }
            log.info("%s: %s", name, results[name])
    return {
        "model": {
            "path": str(model_path),
            "name": info.name,
            "version": info.version,
            "geometry": [info.num_frames, info.height, info.width],
        },
        "data": str(root),
        "modes": results,
    }


def decode_cost(
    paths: list[Path], workers: int, geometry: tuple[int, int, int]
) -> dict[str, dict[str, float]]:
    """Decode CPU and frames per video of each mode over ``paths``, for clips of
    ``geometry`` (frames, height, width): the model's."""
    out = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for name, mode in MODES.items():
            jobs: list[Job] = [(str(p), *geometry, mode) for p in paths]
            done = list(tqdm(pool.map(_decode, jobs, chunksize=4), total=len(jobs), desc=name))
            out[name] = {
                "frames_decoded_per_video": float(np.mean([d[1] for d in done])),
                "decode_cpu_ms_per_video": float(np.mean([d[2] for d in done]) * 1000),
            }
    return out


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"Model {doc['model']['name']} {doc['model']['version']} on `{doc['data']}` "
        f"({next(iter(doc['modes'].values()))['videos']} videos), decoded by the serving path.",
        "",
        "| decode mode | accuracy | same top class as exact | mean total-variation change "
        "| frames decoded / video | decode CPU ms / video |",
        "| --- | --: | --: | --: | --: | --: |",
    ]
    cost = doc.get("w1_cost")
    for name, r in doc["modes"].items():
        same, change = r["same_top_as_exact"], r["mean_abs_prob_change"]
        lines.append(
            f"| {name} | {100 * r['accuracy']:.1f}% ({r['correct']}/{r['videos']}) | "
            f"{'–' if same is None else f'{100 * same:.1f}%'} | "
            f"{'–' if change is None else f'{change:.3f}'} | "
            f"{r['frames_decoded_per_video']:.0f} | {r['decode_cpu_ms_per_video']:.1f} |"
        )
    if cost:
        lines += [
            "",
            "The same modes on the benchmark's W1 workload (200 H.264 clips with B-frames and "
            "deblocking, 4-10 s, half with a keyframe every 12 frames), one process per core:",
            "",
            "| decode mode | frames decoded / video | decode CPU ms / video |",
            "| --- | --: | --: |",
        ]
        for name, c in cost.items():
            lines.append(
                f"| {name} | {c['frames_decoded_per_video']:.0f} | "
                f"{c['decode_cpu_ms_per_video']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "vidlstm.onnx")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "synthetic" / "test")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "cache")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc = evaluate(args.model, args.data, args.workers)
    (w1,) = workloads.ensure([workloads.spec("w1")], args.cache, workers=args.workers)
    frames, height, width = doc["model"]["geometry"]
    doc["w1_cost"] = decode_cost(list(w1.paths), args.workers, (frames, height, width))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    (args.out / "accuracy.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
