# sagascope — every entry point a person or CI uses. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

# Fragments: real backends (mk/backends.mk), contracts/load/bench (mk/contracts.mk), e2e (mk/e2e.mk).
-include $(wildcard mk/*.mk)
.PHONY: help install lock demo up test unit integration fuzz protos check-protos lint clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

# The lock files pin every dependency, with hashes (`make lock` refreshes them from pyproject.toml):
# requirements/dev.lock is what `make install` (and so `make demo`, `make test` and .ci/run)
# installs; requirements/service.lock is the service image's (no dev tools, no embedded MongoDB).
LOCK := requirements/dev.lock
UV_COMPILE = $(VENV)/bin/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
	--generate-hashes --custom-compile-command 'make lock'

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

lock: $(STAMP) ## refresh requirements/*.lock (every dependency pinned, with hashes) from pyproject.toml
	$(UV_COMPILE) --extra dev --extra embedded-mongo -o requirements/dev.lock
	$(UV_COMPILE) -o requirements/service.lock

install: $(STAMP) ## create .venv and install sagascope with its dev tools

demo: $(STAMP) ## start the stack on embedded defaults and run the demo scenarios
	$(VENV)/bin/sagascope demo

up: $(STAMP) ## start the three services locally (Ctrl-C stops them)
	$(VENV)/bin/sagascope up

protos: $(STAMP) ## regenerate the committed Python code from protos/
	$(PY) -m tools.gen_protos

test: $(STAMP) ## the test suite: lint, types, unit, integration (PostgreSQL tier when its binaries exist), fuzz
	$(PY) -m tools.run_tests

unit: $(STAMP) ## unit tests only
	$(PY) -m pytest tests/unit -q

integration: $(STAMP) ## integration tests only
	$(PY) -m pytest tests/integration -q

fuzz: $(STAMP) ## the fuzz tier with a larger budget (FUZZ_EXAMPLES, default 300; FUZZ_RANDOM=1 for a fresh seed) and its summary
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest tests/fuzz -q -p no:cacheprovider

lint: $(STAMP) ## ruff and mypy, on the same paths `make test` checks
	$(PY) -m tools.run_tests lint types

clean: ## remove the virtualenv and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
