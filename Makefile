# Two entry points for a fresh clone: `make demo` and `make test`.
# Each creates .venv, installs resil (editable, building the C engine) and
# what it needs, then runs: the test, docs and bench extras (the benchmarks'
# peers, for tests/test_bench_smoke.py, which runs every benchmark briefly).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.resil-deps

.PHONY: demo test test-versions build docs bench clean services

# The project's own builds treat compiler warnings as errors (setup.py reads
# this; a user's pip install does not set it).
export RESIL_WERROR := 1

# Root installs directly; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml setup.py Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs,bench]'
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

# The reference (docs/, Sphinx autodoc over the installed package) in
# docs/_build/html: warnings are errors and every cross-reference must
# resolve (nitpicky, set in docs/conf.py), so a broken docstring fails;
# -E rereads every page, since autodoc cannot see that the C extension changed.
docs: build
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs docs/_build/html

test: build services
	$(BIN)/python -m mypy --strict resil
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-versions

# The same tests on the other supported CPythons the machine has (python3.X
# on PATH or under pyenv), each in its own .venv-3.X with the extension built
# for it. Left out there: what does not depend on the Python version (the C
# core's tests, the sanitizer build, the wheel, the reference's build, the leak,
# sink and multi-worker server end-to-end runs, and the cluster tests whose
# "hosts" are worker processes against a real Redis: breaker, limiter, dedup),
# which `pytest` above covers on the main interpreter; and the benchmarks'
# tests, since `make bench` runs them on the main interpreter only (and the
# peers are installed there only).
PY_VERSIONS ?= 3.10 3.12 3.13
VERSION_SKIP := --ignore=tests/test_c_core.py --ignore=tests/test_sanitized.py \
	--ignore=tests/test_packaging.py --ignore=tests/test_leaks.py --ignore=tests/test_sinks.py \
	--ignore=tests/test_docs_build.py --ignore=tests/test_region_e2e.py \
	--ignore=tests/test_bench_smoke.py --ignore=tests/test_bench_redis.py \
	--ignore=tests/test_redis_breaker.py --ignore=tests/test_redis_ratelimit.py \
	--ignore=tests/test_redis_dedup.py
test-versions:
	@for v in $(PY_VERSIONS); do \
	  py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v 2>/dev/null | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v); \
	  if [ -z "$$py" ] || ! $$py -c '' 2>/dev/null; then \
	    echo "test-versions: no CPython $$v on this machine; not tested"; continue; fi; \
	  echo "== CPython $$v: $$py"; \
	  test -x .venv-$$v/bin/python || $$py -m venv .venv-$$v || exit 1; \
	  .venv-$$v/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools || exit 1; \
	  .venv-$$v/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]' || exit 1; \
	  .venv-$$v/bin/python setup.py --quiet build_ext --inplace || exit 1; \
	  .venv-$$v/bin/python -m pytest -q -p no:cacheprovider $(VERSION_SKIP) || exit 1; \
	done

# Every benchmark, resil beside its peers (bench_instructions.py counts
# instructions under valgrind, installed when missing; bench_redis.py starts
# a redis-server of its own); add --write-results by hand to update
# benchmarks/RESULTS.md.
BENCHMARKS := $(sort $(wildcard benchmarks/bench_*.py))
bench: build services
	@command -v valgrind >/dev/null 2>&1 || { \
	  echo "installing valgrind for bench_instructions.py"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind >/dev/null; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	for b in $(BENCHMARKS); do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf build docs/_build $(VENV) .venv-3.* resil/*.so .pytest_cache .mypy_cache .hypothesis
