#!/usr/bin/env bash
# vidlstm GPU check. NOT YET RUN ON A GPU: written on a CPU-only machine; the
# first run on a GPU machine is its test. One prepared script, about 5 minutes:
#   1. ONNX Runtime really runs the model on CUDA (session.get_providers()),
#   2. CUDA and CPU probabilities agree on real clips (max abs diff <= 1e-3),
#   3. inference throughput at batch 1..64 (clips/s),
#   4. end-to-end: the service over HTTP on W1 with VIDLSTM_PROVIDERS=cuda,
# all written to bench/results/gpu-<card>.json. Exit status 0 only if 1 and 2 hold.
#
#   bench/gpu_check.sh [MODEL]     (default models/vidlstm.onnx, else an untrained export)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MODEL=${1:-models/vidlstm.onnx}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr '[:upper:]' '[:lower:]' \
  | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
OUT=bench/results/gpu-${CARD}.json
RUN=bench/results/gpu-${CARD}-service
mkdir -p bench/results

if [[ ! -f $MODEL ]]; then
  MODEL=$($PY -c 'from pathlib import Path; from bench.__main__ import resolve_model; print(resolve_model(None, Path("bench/cache")))')
fi
echo "model: $MODEL"

status=0
timeout 600 "$PY" -m bench.gpu_check --model "$MODEL" --out "$OUT" || status=$?

# End to end on W1: the service (CUDA, bigger batches) against the idiomatic server.
timeout 1200 "$PY" -m bench --workloads w1 --repeats 1 --concurrency 8,32 \
  --contenders service,idiomatic --model "$MODEL" --out "$RUN" \
  --set VIDLSTM_PROVIDERS=cuda --set VIDLSTM_MAX_BATCH_SIZE=32 || status=$?

"$PY" - "$OUT" "$RUN/latest.json" <<'PY'
import json, sys
from pathlib import Path
out, run = Path(sys.argv[1]), Path(sys.argv[2])
doc = json.loads(out.read_text()) if out.exists() else {}
if run.exists():
    e2e = json.loads(run.read_text())
    doc["service_end_to_end"] = {
        "settings": e2e["settings"], "service": e2e["service"], "floor": e2e["floor"],
        "ratios": e2e["ratios"], "peak_rss_mb": e2e["peak_rss_mb"], "machine": e2e["machine"],
    }
doc["note"] = "written by bench/gpu_check.sh"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
PY
exit "$status"
