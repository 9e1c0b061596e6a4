# segflow: `make demo` and `make test` on a fresh clone. Both create .venv when missing and are idempotent.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.segflow-installed
TORCH := torch==2.13.0
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-all lint bench browser-deps clean help

help:
	@echo "make demo    install (if needed) and run the pipeline on MovieLens 100k; prints the report's path"
	@echo "make test    install (if needed) and run the default test suite (~10 min budget)"
	@echo "make lint    ruff (lint and format), the import layers (import-linter) and the type check (mypy); make test runs them first"
	@echo "make bench   rerun the benchmarks (slow) and rewrite benchmarks/results/*.json"
	@echo "make clean   remove runs/, caches of this checkout and .venv"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: the CPU wheel of 2.13.0 lies on local disk; anything else would pull a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/segflow run

# Chromium from Debian for the browser tests (never a browser downloaded by a test tool).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "warning: could not install chromium; browser tests will be skipped"; \
	  else echo "note: chromium missing and not root; browser tests will be skipped"; fi; }

test: install browser-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra

test-all: install browser-deps
	$(BIN)/python -m pytest -q -ra -m ""

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/rating.py
	$(BIN)/python benchmarks/ranking.py
	$(BIN)/python benchmarks/segmentation.py
	$(BIN)/python benchmarks/segmentation.py --incremental --ml100k --no-main --merge
	$(BIN)/python benchmarks/rerun.py

clean:
	rm -rf runs .pytest_cache .ruff_cache $(VENV)
