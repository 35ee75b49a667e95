"""GPU check: CUDA really runs the model, agrees with CPU, and how fast it is.

    python -m bench.gpu_check --model models/vidlstm.onnx --out bench/results

NOT YET RUN ON A GPU: written on a CPU-only machine, exercised there only up to
the point where the CUDA execution provider fails to load. ``bench/gpu_check.sh``
runs it, then the end-to-end service benchmark with ``VIDLSTM_PROVIDERS=cuda``.

1. The CUDA execution provider must be the one running: ``session.get_providers()``.
2. Probabilities on real clips (W1, decoded by the serving path) must match the
   CPU's within 1e-3 (max absolute difference).
3. Inference throughput, clips/s, at batch 1 to 64.
Writes ``gpu-<card>.json`` (the end-to-end figures are merged in by the script).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import workloads
from bench.floor import infer_rate, sample_clips
from bench.suite import service_job
from service.model import load_model
from service.settings import Settings

log = logging.getLogger("bench.gpu_check")

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
BATCHES = (1, 2, 4, 8, 16, 32, 64)
MAX_ABS_DIFF = 1e-3


def card_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"
    return re.sub(r"[^a-z0-9]+", "-", out.lower()).strip("-")


def check(model_path: Path, cache: Path) -> dict[str, Any]:
    doc: dict[str, Any] = {"card": card_name(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    gpu = load_model(model_path, providers=(CUDA, CPU))
    doc["providers"] = list(gpu.session.get_providers())
    doc["cuda_runs"] = doc["providers"][0] == CUDA
    if not doc["cuda_runs"]:
        log.error("CUDA execution provider did not load: %s", doc["providers"])
        return doc
    cpu = load_model(model_path, providers=(CPU,))
    (w1,) = workloads.ensure([workloads.spec("w1", quick=True)], cache, workers=2)
    clips = sample_clips(w1.paths, service_job(Settings(), cpu), len(w1.paths))
    diff = float(np.max(np.abs(gpu.run(clips) - cpu.run(clips))))
    doc["max_abs_diff_vs_cpu"] = diff
    doc["agrees_with_cpu"] = diff <= MAX_ABS_DIFF
    doc["clips_per_s"] = {str(b): infer_rate(gpu, clips, batch=b) for b in BATCHES}
    doc["cpu_clips_per_s_batch8"] = infer_rate(cpu, clips, batch=8)
    return doc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("bench/cache"))
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    doc = check(args.model, args.cache)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    ok = doc.get("cuda_runs") and doc.get("agrees_with_cpu")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
