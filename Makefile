# vidlstm — every entry point. `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= models/vidlstm.onnx

.PHONY: setup run model experiment test lint format bench bench-accuracy fuzz soak overload nginx-conf deploy-check image-test clean

setup: $(STAMP)

# Reinstall when the project's dependencies change. torch==2.13.0 (the train
# extra) resolves to the CPU wheel that lies on this machine's disk; the bulk
# extra (Ray, pyarrow) is installed so that python -m bulk is tested.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev,bulk]'
	touch $(STAMP)

model: $(MODEL)

# Huge pages for training's big per-step tensors: faster epochs, the same numbers
# (docs/tuning-log.md). SOURCE_DATE_EPOCH, when set, makes the file byte-identical.
$(MODEL): | $(STAMP)
	GLIBC_TUNABLES=glibc.malloc.hugetlb=1 $(PY) -m model_export all --out $(dir $(MODEL))

# {LSTM, mean pool, SVM} x {motion off, on} and the LSTM on shuffled frames, every
# model on the same per-step inputs: docs/experiment.{json,md}. Longer than make model.
experiment: $(STAMP)
	GLIBC_TUNABLES=glibc.malloc.hugetlb=1 $(PY) -m model_export experiment --docs docs

# Jobs (POST /jobs) keep their records and uploads in build/jobs unless told otherwise.
run: $(STAMP) $(MODEL)
	VIDLSTM_MODEL_PATH=$(MODEL) VIDLSTM_HOST=$${VIDLSTM_HOST:-0.0.0.0} \
		VIDLSTM_JOBS_DIR=$${VIDLSTM_JOBS_DIR:-build/jobs} $(PY) -m service

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

# Measures cost, so an untrained model of the default architecture will do:
# it needs no trained model. BENCH_ARGS=--quick for a short run.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

bench-accuracy: $(STAMP) $(MODEL)
	$(PY) -m bench.accuracy

FUZZ_EXAMPLES ?= 100000
fuzz: $(STAMP)
	mkdir -p build/fuzz-failures
	VIDLSTM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) VIDLSTM_FUZZ_RANDOM=1 VIDLSTM_FUZZ_FAILURES=build/fuzz-failures \
		$(PY) -m pytest tests/service/api/test_fuzz.py --timeout=0 -p no:cacheprovider

SOAK_MINUTES ?= 30
soak: $(STAMP)
	mkdir -p build
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES) --out build/soak.json

overload: $(STAMP)
	mkdir -p build
	$(PY) -m bench.overload --queue-per-worker 0 --out build/overload.json

# An nginx config for `make run` on :8000 plus a second replica on :8001.
nginx-conf: $(STAMP)
	$(PY) deploy/nginx/render.py --upstream 127.0.0.1:8000 --upstream 127.0.0.1:8001 \
		--listen 127.0.0.1:8080 --runtime-dir /tmp/vidlstm-nginx --out build/nginx/nginx.conf

deploy-check: $(STAMP)
	$(PY) -m pytest tests/deploy

# Builds and runs the real image on a local dockerd (root; apt docker.io debootstrap).
image-test: $(STAMP)
	deploy/image_test.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
