# Obsigen. `make run` serves the platform on the embedded defaults; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8

.PHONY: help run test lint typecheck secrets-scan pytest bench services test-deps clean

help:
	@echo "make run    - install, migrate and serve on http://127.0.0.1:8000 (embedded defaults)"
	@echo "make test   - install test dependencies, start services, lint, type-check, run the suite"
	@echo "make bench  - run the benchmarks; results in bench/results/"
	@echo "make lint   - ruff check + format check"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# The lock file pins every package; --frozen refuses to run if pyproject and lock disagree.
# Offline first: online, uv revalidates the llama-cpp-python sdist, gets a new cache revision
# and recompiles llama.cpp (minutes) even when an identical build sits in its cache.
$(BIN)/obsigen: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --offline --python $(PYTHON) 2>/dev/null || $(UV) sync --frozen --python $(PYTHON)
	@touch $@

run: $(BIN)/obsigen
	$(BIN)/obsigen migrate
	$(BIN)/obsigen bootstrap
	$(BIN)/obsigen serve

test-deps:
	scripts/install-test-deps.sh
	scripts/install-sandbox-runtime.sh

services: test-deps
	scripts/services.sh start

lint: $(BIN)/obsigen
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/obsigen
	$(BIN)/mypy

# detect-secrets over the tree against the audited baseline (.secrets.baseline).
secrets-scan: $(BIN)/obsigen
	scripts/scan-secrets.sh

pytest: $(BIN)/obsigen
	$(BIN)/pytest

test: $(BIN)/obsigen services lint typecheck secrets-scan pytest

bench: $(BIN)/obsigen services
	$(BIN)/python -m bench
	$(BIN)/python -m bench.keys
	$(BIN)/python -m bench.tokens
	$(BIN)/python -m bench.auth_step
	$(BIN)/python -m bench.audit_turn
	$(BIN)/python -m bench.audit_chain --mariadb mysql+asyncmy://root@127.0.0.1:3306/

clean:
	rm -rf $(VENV) $(TOOLS) var .mypy_cache .ruff_cache .pytest_cache
