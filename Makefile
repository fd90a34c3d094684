# Obsigen. `make run` serves the platform on the embedded defaults; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
# checkov pins its own boto3, incompatible with the project's: it gets a venv of its own.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(TOOLS)/checkov/bin/checkov

.PHONY: help run test lint typecheck secrets-scan deploy-check pytest bench soak services test-deps clean

help:
	@echo "make run    - install, migrate and serve on http://127.0.0.1:8000 (embedded defaults)"
	@echo "make test   - install test dependencies, start services, lint, type-check, run the suite"
	@echo "make bench  - run the benchmarks; results in bench/results/"
	@echo "make soak   - 10 minutes of mixed traffic on two servers (MariaDB + Redis)"
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

$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install --quiet checkov==$(CHECKOV_VERSION)

# The image and the manifests (no Docker or cluster here): hadolint; the overlays rendered and
# validated strictly against Kubernetes 1.31; checkov, offline, on both. docs/deploy.md.
deploy-check: $(BIN)/obsigen $(CHECKOV)
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/python scripts/render-k8s.py --kubernetes-version 1.31.0 --out build/k8s
	$(CHECKOV) --skip-download --quiet --compact --framework dockerfile -f deploy/Dockerfile
	$(CHECKOV) --skip-download --quiet --compact --framework kubernetes -d build/k8s

pytest: $(BIN)/obsigen
	$(BIN)/pytest

test: $(BIN)/obsigen services lint typecheck secrets-scan deploy-check pytest

# Every suite (bench/README.md); one alone: .venv/bin/python -m bench --suite NAME [--quick].
bench: $(BIN)/obsigen services
	$(BIN)/python -m bench

# Not part of bench or test: two servers on MariaDB + Redis under mixed traffic, 10 minutes
# by default (SOAK_ARGS="--minutes 2" to shorten).
soak: $(BIN)/obsigen services
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) var .mypy_cache .ruff_cache .pytest_cache
