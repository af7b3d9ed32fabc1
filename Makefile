# Two entry points for a fresh clone: `make demo` and `make test`.
# Each creates .venv, installs resil (editable, building the C engine) and
# what it needs, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.resil-deps

.PHONY: demo test build bench clean services

# Root installs directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Rebuilds the extension in place when a C file changed (a no-op otherwise).
build: $(STAMP)
	$(BIN)/python setup.py --quiet build_ext --inplace

demo: build
	$(BIN)/python -m resil demo

# Real services the end-to-end tests start themselves (tests/test_sinks.py
# runs a redis-server on a free loopback port); installed when missing.
services:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server for the end-to-end tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

test: build services
	$(BIN)/python -m mypy --strict resil
	$(BIN)/python -m pytest

# Every benchmark, resil beside its peers; add --write-results by hand to
# update benchmarks/RESULTS.md.
BENCHMARKS := $(sort $(wildcard benchmarks/bench_*.py))
bench: build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	for b in $(BENCHMARKS); do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build $(VENV) resil/*.so .pytest_cache .mypy_cache .hypothesis
