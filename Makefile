# trajlab: `make help` lists the targets. Everything runs from the repo root.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps
PROTOS := $(sort $(shell find proto -name "*.proto"))
PROFILE ?= quick
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup proto lint test run bench images clean audit lock

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"trajlab needs Python 3.11, found {sys.version.split()[0]} (set PYTHON=)"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch==2.13.0 is the CPU build (see pyproject); GPU images install their own first.
	$(PIP) install -q -e '.[trainer,encoder,describer,reporter,dataset,dev]'
	@touch $@

$(STAMPS)/proto: $(STAMPS)/venv $(PROTOS)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
	  --mypy_out=. --mypy_grpc_out=. $(PROTOS)
	@for d in $$(find trajlab -path '*/v1/*_pb2.py' -exec dirname {} \; | sort -u); do \
	  touch $$d/__init__.py $$(dirname $$d)/__init__.py; done
	@touch $@

setup: $(STAMPS)/venv $(STAMPS)/proto ## Create .venv, install dependencies, generate stubs (idempotent)

proto: $(STAMPS)/proto ## Generate gRPC stubs and type stubs from proto/ (also run by setup)

BUF := .tools/node_modules/.bin/buf

$(BUF):
	npm install --silent --prefix .tools @bufbuild/buf

lint: setup $(BUF) ## ruff on the code, buf lint on the contracts
	$(VENV)/bin/ruff check trajlab services tests bench
	$(BUF) lint proto

test: setup ## Run the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

run: setup ## Run the pipeline on the embedded default profile (PROFILE=quick)
	$(VENV)/bin/trajlab run --profile $(PROFILE)

bench: setup ## Run the benchmarks in bench/ and print their ratios
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

audit: setup ## pip-audit the venv against PyPI's advisories; fails on a finding or a package it cannot audit
	$(VENV)/bin/pip-audit --local --strict --progress-spinner off $(AUDIT_ARGS)

lock: setup ## Record the venv's exact versions in requirements.lock (see docs/RELIABILITY.md)
	@{ echo "# Exact versions of the dev venv (make lock; $$($(PY) --version), $$(uname -m))."; \
	   echo "# Use as a constraints file: pip install -c requirements.lock -e '.[...]'"; \
	   $(PIP) freeze --exclude-editable --all | LC_ALL=C sort -f; } > requirements.lock
	@echo "requirements.lock: $$(grep -vc '^#' requirements.lock) packages"

images: ## Build the service images (VARIANT=cpu|gpu; works without a registry, see docs/CONTAINERS.md)
	TRAJLAB_VARIANT=$(or $(VARIANT),cpu) bash deploy/docker/build-images.sh $(IMAGES)

clean: ## Remove generated stubs, caches and run artefacts (keeps .venv)
	find trajlab -path '*/v1/*_pb2*' -delete
	rm -rf $(STAMPS)/proto .pytest_cache .ruff_cache
