# One entry for every check: `make test` runs exactly what .ci/run runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint typecheck unit venv tools clean

$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

tools: $(STAMP)
	scripts/install-tools
	tests/reliability/install-scanners
	benchmarks/run --install-only
	scripts/image-check --install-only

## run: serve the webhook on https://localhost:8443 with the embedded default policy and dev certificates
run: $(STAMP)
	$(BIN)/gpu-rdma-injector serve --no-kube --port $${PORT:-8443}

## test: every check and every test (lint, format, types, import contracts, pytest)
test: check

check: $(STAMP) tools lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache .hypothesis
