#!/usr/bin/env bash
# vidlstm GPU check: one prepared script, a few minutes on a GPU machine:
#   1. ONNX Runtime really runs the model on CUDA (session.get_providers()),
#   2. CUDA and CPU probabilities agree on real clips (max abs diff <= 1e-3),
#   3. inference throughput at batch 1..64 (clips/s), beside the CPU's,
#   4. end-to-end: the service over HTTP on W1 with VIDLSTM_PROVIDERS=cuda at
#      concurrency 8, 32 and 64, with its default serving processes (one per 4
#      cores) and the scale-up figures of `make bench` (2 processes against 1,
#      the ingress ceiling, the front's CPU per request),
#   5. a py-spy profile of the serving processes and workers at concurrency 32,
# all written to bench/results/gpu-<card>*. Exit status 0 only if 1 and 2 hold.
#
#   bench/gpu_check.sh [MODEL]     (default models/vidlstm.onnx, else an untrained export)
#
# PROVIDER=cpu rehearses the whole script on a machine without a GPU; PY picks the
# interpreter (default .venv/bin/python, else python3); E2E_ARGS and E2E_TIMEOUT
# shape the end-to-end run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${PY:-} ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
MODEL=${1:-models/vidlstm.onnx}
PROVIDER=${PROVIDER:-cuda}
E2E_ARGS=${E2E_ARGS:---workloads w1 --repeats 1 --concurrency 1,8,32,64}
E2E_TIMEOUT=${E2E_TIMEOUT:-1200}

# onnxruntime-gpu dlopens the CUDA libraries (cuBLAS, cuDNN, ...) by name: where
# they come as pip packages (nvidia-*, as PyTorch installs them), put them on the path.
NVIDIA_LIBS=$("$PY" - <<'PY'
import site, pathlib
dirs = {p.parent for s in site.getsitepackages() for p in pathlib.Path(s, "nvidia").glob("**/lib*.so*")}
print(":".join(sorted(map(str, dirs))))
PY
)
export LD_LIBRARY_PATH=${NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

CARD=unknown
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr '[:upper:]' '[:lower:]' \
    | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
fi
[[ $PROVIDER == cuda ]] || CARD=$CARD-$PROVIDER-rehearsal
OUT=bench/results/gpu-${CARD}.json
RUN=bench/results/gpu-${CARD}-service
mkdir -p bench/results

if [[ ! -f $MODEL ]]; then
  MODEL=$($PY -c 'from pathlib import Path; from bench.__main__ import resolve_model; print(resolve_model(None, Path("bench/cache")))')
fi
echo "model: $MODEL  provider: $PROVIDER  python: $PY"

status=0
timeout 600 "$PY" -m bench.gpu_check --model "$MODEL" --out "$OUT" --provider "$PROVIDER" || status=$?

# End to end on W1: the service (on the GPU, bigger batches) against the idiomatic server.
# shellcheck disable=SC2086  # E2E_ARGS is a list of arguments
timeout "$E2E_TIMEOUT" "$PY" -m bench $E2E_ARGS --contenders service,idiomatic --model "$MODEL" \
  --out "$RUN" --set "VIDLSTM_PROVIDERS=$PROVIDER" --set VIDLSTM_MAX_BATCH_SIZE=32 || status=$?

# Where the CPU goes at concurrency 32, every serving process and worker (py-spy, native).
timeout 300 "$PY" -m bench.profile --model "$MODEL" --concurrency 32 --seconds 30 \
  --label "gpu-${CARD}-c32" --set "VIDLSTM_PROVIDERS=$PROVIDER" --set VIDLSTM_MAX_BATCH_SIZE=32 \
  || echo "profile failed (py-spy missing?)"

"$PY" - "$OUT" "$RUN/latest.json" <<'PY'
import json, sys
from pathlib import Path
out, run = Path(sys.argv[1]), Path(sys.argv[2])
doc = json.loads(out.read_text()) if out.exists() else {}
if run.exists():
    e2e = json.loads(run.read_text())
    doc["service_end_to_end"] = {
        key: e2e[key]
        for key in ("command", "settings", "workloads", "service", "floor", "ratios", "peak_rss_mb",
                    "machine", "scale", "front_cpu_ms", "litserve_style")
        if key in e2e
    }
doc["note"] = "written by bench/gpu_check.sh"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
PY
exit "$status"
