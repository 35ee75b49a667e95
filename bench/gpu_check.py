"""GPU check: CUDA really runs the model, agrees with CPU, and how fast it is.

    python -m bench.gpu_check --model models/vidlstm.onnx --out bench/results/gpu-CARD.json
    python -m bench.gpu_check --provider cpu ...   # rehearsal of the whole check on a CPU

``bench/gpu_check.sh`` runs it, then the end-to-end service benchmark with
``VIDLSTM_PROVIDERS=cuda``.

1. The wanted execution provider must be the one running: ``session.get_providers()``.
2. Probabilities on real clips (W1, decoded by the serving path) must match the
   CPU's within 1e-3 (max absolute difference).
3. Inference throughput, clips/s, at batch 1 to 64, beside the CPU's.
4. With CUDA, the same two figures with TF32 on (``VIDLSTM_CUDA_TF32``), for reference.
Writes one JSON file (the end-to-end figures are merged in by the script).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bench import workloads
from bench.floor import infer_rate, sample_clips
from bench.suite import service_job
from service.core.setting_values import PROVIDER_NAMES
from service.core.settings import Settings
from service.pipeline.inference import CPU, CUDA, load_model

log = logging.getLogger("bench.gpu_check")

BATCHES = (1, 2, 4, 8, 16, 32, 64)
MAX_ABS_DIFF = 1e-3


def card() -> dict[str, str]:
    """The first GPU's name (also as a file-name slug), memory and driver, per nvidia-smi."""
    try:
        line = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {"name": "unknown", "slug": "unknown"}
    name, memory, driver = (part.strip() for part in line.split(",", 2))
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return {"name": name, "slug": slug, "memory": memory, "driver": driver}


def check(
    model_path: Path, cache: Path, provider: str, batches: tuple[int, ...] = BATCHES
) -> dict[str, Any]:
    """Run the checks with ``provider`` (a name such as ``cuda``) against the CPU."""
    wanted = PROVIDER_NAMES[provider]
    doc: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "card": card(),
        "onnxruntime": ort.__version__,
        "model": str(model_path),
        "provider": wanted,
    }
    chain = tuple(dict.fromkeys((wanted, CPU)))
    dev = load_model(model_path, providers=chain)
    doc["providers"] = list(dev.session.get_providers())
    doc["provider_runs"] = doc["providers"][0] == wanted
    if not doc["provider_runs"]:
        log.error("%s did not load: the session runs %s", wanted, doc["providers"])
        return doc
    cpu = load_model(model_path, providers=(CPU,))
    doc["clip_shape"] = list(cpu.info.clip_shape)
    (w1,) = workloads.ensure(
        [workloads.spec("w1", quick=True)], cache, workers=len(os.sched_getaffinity(0))
    )
    clips = sample_clips(w1.paths, service_job(Settings(), cpu), len(w1.paths))
    diff = float(np.max(np.abs(dev.run(clips) - cpu.run(clips))))
    doc["clips_compared"] = len(clips)
    doc["max_abs_diff_vs_cpu"] = diff
    doc["agrees_with_cpu"] = diff <= MAX_ABS_DIFF
    log.info("%s vs CPU on %d clips: max abs difference %.2e", wanted, len(clips), diff)
    doc["clips_per_s"] = {}
    doc["cpu_clips_per_s"] = {}
    for batch in batches:
        doc["clips_per_s"][str(batch)] = rate = infer_rate(dev, clips, batch=batch)
        doc["cpu_clips_per_s"][str(batch)] = cpu_rate = infer_rate(cpu, clips, batch=batch)
        log.info("batch %2d: %9.1f clips/s (CPU %7.1f)", batch, rate, cpu_rate)
    if wanted == CUDA:
        tf32 = load_model(model_path, providers=chain, cuda_tf32=True)
        diff = float(np.max(np.abs(tf32.run(clips) - cpu.run(clips))))
        rates = {str(b): infer_rate(tf32, clips, batch=b) for b in batches}
        doc["tf32"] = {"max_abs_diff_vs_cpu": diff, "clips_per_s": rates}
        log.info("TF32: max abs difference %.2e, clips/s %s", diff, rates)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("bench/cache"))
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--provider", default="cuda", choices=sorted(PROVIDER_NAMES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc = check(args.model, args.cache, args.provider)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    ok = doc.get("provider_runs") and doc.get("agrees_with_cpu")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
