#!/usr/bin/env bash
# vidlstm training on a GPU: one prepared script for a machine with an NVIDIA GPU and a
# CUDA build of torch (the CPU build cannot see the GPU; `pip install torch==2.14.1`
# brings one where its wheels can be reached). It
#   1. renders a small UCF-style folder (20 classes, grouped clips, official-style lists),
#   2. trains the CNN+LSTM on it for EPOCHS epochs with --device cuda, then with --device cpu,
#      the same data, seed and split,
#   3. writes bench/results/gpu-train-<card>.json: seconds per epoch on each device, the
#      test accuracy of each exported model, and whether the two agree (same labels;
#      accuracy within 2 standard errors of each other).
# Exit status 0 only if CUDA was used and the two runs agree.
#
#   bench/gpu_train_check.sh            EPOCHS=3 GROUPS=10 CLIPS=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
EPOCHS=${EPOCHS:-3}
GROUPS=${GROUPS:-10}
CLIPS=${CLIPS:-2}
WORK=${WORK:-build/gpu-train}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')):" \
    "install a CUDA build of torch on this machine first" >&2
  exit 3
fi
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr '[:upper:]' '[:lower:]' \
  | sed -E 's/[^a-z0-9]+/-/g; s/^-+//; s/-+$//')
mkdir -p "$WORK" bench/results
"$PY" -m model_export.data.ucf_like "$WORK/UCF-like" --groups "$GROUPS" --clips "$CLIPS" --no-progress
LISTS="$WORK/ucfTrainTestlist"
for device in cuda cpu; do
  "$PY" -m model_export all --data "$WORK/UCF-like" --device "$device" --epochs "$EPOCHS" \
    --split-files "$LISTS/trainlist01.txt" "$LISTS/testlist01.txt" --height 64 --width 64 \
    --cache "$WORK/cache" --out "$WORK/$device" --no-progress
done

"$PY" - "$WORK" "bench/results/gpu-train-$CARD.json" <<'PY'
import json, math, sys
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
runs = {d: json.loads((work / d / "checkpoints" / "results.json").read_text()) for d in ("cuda", "cpu")}
doc = {"card": out.stem.removeprefix("gpu-train-")}
for device, r in runs.items():
    lstm = r["models"]["lstm"]
    doc[device] = {
        "seconds_per_epoch": lstm["history"]["seconds"],
        "test_accuracy": lstm["test"]["accuracy"],
        "test_count": lstm["test"]["count"],
    }
a, b = doc["cuda"]["test_accuracy"], doc["cpu"]["test_accuracy"]
n = doc["cpu"]["test_count"]
se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-9) / max(n, 1))
doc["same_labels"] = runs["cuda"]["labels"] == runs["cpu"]["labels"]
doc["accuracy_difference"] = a - b
doc["agree"] = doc["same_labels"] and abs(a - b) <= 2 * se
out.write_text(json.dumps(doc, indent=1) + "\n")
print(json.dumps(doc, indent=1))
sys.exit(0 if doc["agree"] else 1)
PY
