# vidlstm — every entry point. `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL ?= models/vidlstm.onnx

.PHONY: setup run model test lint format bench clean

setup: $(STAMP)

# Reinstall when the project's dependencies change. torch==2.13.0 (the train
# extra) resolves to the CPU wheel that lies on this machine's disk.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

model: $(MODEL)

$(MODEL): | $(STAMP)
	$(PY) -m model_export all --out $(dir $(MODEL))

run: $(STAMP) $(MODEL)
	VIDLSTM_MODEL_PATH=$(MODEL) $(PY) -m service

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
