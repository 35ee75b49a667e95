# syntax=docker/dockerfile:1.7
# vidlstm runtime image: the service and one baked model, no torch.
#
#   docker build -t vidlstm .                                    # GPU image, model trained here
#   docker build --build-arg MODEL_SOURCE=context -t vidlstm .   # bake ./models/vidlstm.onnx
#   docker build --build-arg RUNTIME_BASE=python:3.12-slim-bookworm -t vidlstm:cpu .
#   docker run --gpus all -p 8000:8000 --stop-timeout 40 vidlstm
#
# Stop: SIGTERM makes the service drain (finish requests in flight, refuse new
# ones) for up to VIDLSTM_DRAIN_TIMEOUT_S. Docker's default grace of 10 s is too
# short for a long video, so give `docker run --stop-timeout` / compose
# `stop_grace_period` / k8s `terminationGracePeriodSeconds` at least the drain
# timeout plus a few seconds (deploy/README.md). A Dockerfile cannot set it.

# onnxruntime-gpu 1.31 is built against CUDA 13.0 and loads cuDNN 9, cuBLAS(Lt),
# cuFFT and cuRAND at run time. The cudnn-runtime image carries all of them;
# pip's onnxruntime-gpu[cuda,cudnn] extras leave out cuBLAS. The host driver must
# support CUDA 13 (R580 or newer). ORT_VERSION and this tag move together.
ARG RUNTIME_BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG BUILD_BASE=python:3.12-slim-bookworm
# export: train and export the default model in the build (about 15 min on 2 cores);
# context: copy models/vidlstm.onnx from the build context instead.
ARG MODEL_SOURCE=export

# ---------------------------------------------------------------- build stages
# The service as a wheel (pure Python). No torch here: with MODEL_SOURCE=context
# the image builds without ever installing it.
FROM ${BUILD_BASE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ service/
COPY model_export/ model_export/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Where the baked model comes from: one of the two model-* stages, picked by
# MODEL_SOURCE. BuildKit builds only the stage that is used.
FROM ${BUILD_BASE} AS model-export
# On PyPI, torch for Linux pulls the CUDA wheels (several GB) that exporting
# does not need; the CPU index serves torch==2.13.0+cpu, which satisfies the pin.
# Set it empty to resolve from PyPI alone.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/build-venv/bin:${PATH}
WORKDIR /src
RUN python3 -m venv /opt/build-venv
# Dependencies first, from pyproject alone, so a code change does not reinstall torch.
# The pins are pyproject's own (torch==2.13.0; the rest are floors), not repeated here.
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "${TORCH_INDEX_URL}"} '.[train]'
COPY service/ service/
COPY model_export/ model_export/
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && python -m model_export all --out /models

FROM scratch AS model-context
COPY models/vidlstm.onnx /models/vidlstm.onnx

# A stage name, not an image, so there is no tag to pin.
# hadolint ignore=DL3006
FROM model-${MODEL_SOURCE} AS model

# -------------------------------------------------------------- runtime stage
FROM ${RUNTIME_BASE} AS runtime
ARG ORT_VERSION=1.31.1
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# The CUDA and Debian bases carry no Python; python:*-slim does. The versions
# are those of whichever base RUNTIME_BASE names (Ubuntu 24.04: 3.12, Debian 12:
# 3.11), so the base tag is the pin.
# hadolint ignore=DL3008
RUN if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv \
    && groupadd --system --gid 10001 vidlstm \
    && useradd --system --uid 10001 --gid vidlstm --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin vidlstm

# Only the runtime dependencies: `pip install .` without extras, so no torch.
# The wheel is bind-mounted rather than copied, so it leaves no layer behind.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/*.whl "onnxruntime-gpu==${ORT_VERSION}"

# Root-owned and read-only: the service user can load the model, not replace it.
COPY --from=model --chmod=0444 /models/vidlstm.onnx /opt/vidlstm/model/vidlstm.onnx

# VIDLSTM_MODEL_PATH points at the baked model; mount another one read-only and
# override it (-v ./models:/models:ro -e VIDLSTM_MODEL_PATH=/models/x.onnx).
# Uploads, CUDA's JIT cache and any library cache go under /tmp, the one
# writable place (an emptyDir on Kubernetes, where the root filesystem is
# read-only). ONNX Runtime's usage telemetry is off: a production replica has
# no business sending it, and with no writable HOME it warns at every start.
ENV VIDLSTM_MODEL_PATH=/opt/vidlstm/model/vidlstm.onnx \
    VIDLSTM_JOBS_DIR=/var/lib/vidlstm/jobs \
    VIDLSTM_HOST=0.0.0.0 \
    VIDLSTM_PORT=8000 \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    CUDA_CACHE_PATH=/tmp/cuda-cache \
    ORT_DISABLE_TELEMETRY=1

# Jobs (POST /jobs) keep their records and uploads here: a volume, so that they
# outlive the container (mount a named volume to keep them across re-creation).
RUN mkdir -p /var/lib/vidlstm/jobs && chown 10001:10001 /var/lib/vidlstm/jobs
VOLUME ["/var/lib/vidlstm/jobs"]

WORKDIR /opt/vidlstm
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# /health is 200 only once the model is loaded and warmed up, 503 while starting
# or draining; urlopen raises on 503, so the exit status follows it. Python,
# because the bases need not have curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VIDLSTM_PORT', '8000'), timeout=4)"]
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
