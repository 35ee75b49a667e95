#!/usr/bin/env bash
# Build the real Dockerfile and run the image, on a machine with no registry.
#
#   sudo deploy/image_test.sh        (root: starts dockerd if none runs, debootstraps bases)
#
# Needs: docker.io and debootstrap from apt, PyPI and the Debian mirror. What it
# stands in for, and why:
#   - BuildKit resolves `# syntax=docker/dockerfile:1.7` from Docker Hub; the
#     build here uses a copy of the Dockerfile without that line (Debian's
#     dockerd 20.10 has every feature the file uses built in);
#   - the bases come from debootstrap (bookworm) via `docker import`, the
#     runtime one bare, so the Dockerfile's own apt install of Python is tested;
#   - the host's CA bundle is added to those bases, since pip inside the build
#     must trust whatever this host trusts to reach PyPI;
#   - MODEL_SOURCE=context with the tiny test model, not the 15-minute export.
# Checks: the image builds, runs as uid 10001 on a read-only root, has no torch,
# turns healthy, classifies a real video, and drains and exits 0 on docker stop.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
DOCKER=${DOCKER:-/usr/bin/docker}  # Debian's client: BuildKit without buildx
IMAGE=vidlstm:image-test
BASE=local/bookworm
PORT=${PORT:-18500}
WORK=$(mktemp -d)
DOCKERD_PID=

cleanup() {
    "$DOCKER" rm -f vidlstm-image-test >/dev/null 2>&1 || true
    if [[ -n $DOCKERD_PID ]]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        wait "$DOCKERD_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "starting dockerd (no iptables, no default bridge: builds and runs use the host network)"
    /usr/sbin/dockerd --iptables=false --ip6tables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 0.5; done
    "$DOCKER" info >/dev/null
fi
build() { DOCKER_BUILDKIT=1 "$DOCKER" build --network host "$@"; }

# Bases: bare bookworm for the runtime stage, bookworm with Python for the build stages.
if ! "$DOCKER" image inspect "$BASE:runtime" >/dev/null 2>&1; then
    debootstrap --variant=minbase bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log"
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
    tar -C "$WORK/rootfs" -c . | "$DOCKER" import - "$BASE:minbase"
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/host-ca.crt"
    printf '%s\n' "FROM $BASE:minbase" "COPY host-ca.crt /etc/ssl/certs/host-ca.crt" \
        "ENV PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt" \
        >"$WORK/Dockerfile.runtime"
    build -q -f "$WORK/Dockerfile.runtime" -t "$BASE:runtime" "$WORK"
    printf '%s\n' "FROM $BASE:runtime" \
        "RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv && rm -rf /var/lib/apt/lists/* && ln -s /usr/bin/python3 /usr/local/bin/python" \
        "ENV PIP_BREAK_SYSTEM_PACKAGES=1" >"$WORK/Dockerfile.build"
    build -q -f "$WORK/Dockerfile.build" -t "$BASE:build" "$WORK"
fi

# The build context, as .dockerignore lets it through, plus the tiny model.
mkdir -p "$WORK/ctx/models"
cp -r "$REPO"/{pyproject.toml,README.md,service,model_export,.dockerignore} "$WORK/ctx/"
sed '1{/^# syntax=/d}' "$REPO/Dockerfile" >"$WORK/ctx/Dockerfile"
(cd "$REPO" && "$PY" -c "import sys; from pathlib import Path; from model_export.tiny import build_tiny_model; build_tiny_model(Path(sys.argv[1]))" "$WORK/ctx/models/vidlstm.onnx")
(cd "$REPO" && "$PY" -c "import sys; from pathlib import Path; from tests.support.media import moving_square_frames, write_video; write_video(Path(sys.argv[1]), moving_square_frames(50, 96, 128))" "$WORK/clip.mp4")
build -t "$IMAGE" --build-arg MODEL_SOURCE=context \
    --build-arg RUNTIME_BASE="$BASE:runtime" --build-arg BUILD_BASE="$BASE:build" "$WORK/ctx"

echo "== the image"
"$DOCKER" run --rm --network none --entrypoint python "$IMAGE" -c \
    "import importlib.util as u, os; assert u.find_spec('torch') is None; assert os.getuid() == 10001; print('no torch, uid 10001')"

echo "== run, read-only root"
"$DOCKER" rm -f vidlstm-image-test >/dev/null 2>&1 || true  # left by an interrupted run
"$DOCKER" run -d --name vidlstm-image-test --network host --read-only --tmpfs /tmp \
    --stop-timeout 40 -e VIDLSTM_PORT="$PORT" -e VIDLSTM_DECODE_WORKERS=1 "$IMAGE" >/dev/null
for _ in $(seq 120); do
    [[ $("$DOCKER" inspect -f '{{.State.Health.Status}}' vidlstm-image-test) == healthy ]] && break
    sleep 0.5
done
[[ $("$DOCKER" inspect -f '{{.State.Health.Status}}' vidlstm-image-test) == healthy ]]
echo "HEALTHCHECK: healthy"
curl -fsS -F file=@"$WORK/clip.mp4" "http://127.0.0.1:$PORT/classify?top_k=1" | head -c 300
echo

echo "== docker stop with a request in flight"
curl -fsS -o /dev/null -w 'in-flight request: %{http_code}\n' -F file=@"$WORK/clip.mp4" \
    "http://127.0.0.1:$PORT/classify" &
curl_pid=$!
sleep 0.05
"$DOCKER" stop vidlstm-image-test >/dev/null
wait "$curl_pid"
exit_code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' vidlstm-image-test)
"$DOCKER" logs vidlstm-image-test 2>&1 | grep -m1 draining
[[ $exit_code == 0 ]] && echo "exited 0 after draining: image test passed"
