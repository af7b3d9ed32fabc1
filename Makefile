# Two entry points for a fresh clone: `make demo` and `make test`.
# Each creates .venv, installs resil (editable, building the C engine) and
# what it needs, then runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.resil-deps

.PHONY: demo test build bench clean

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

test: build
	$(BIN)/python -m mypy --strict resil
	$(BIN)/python -m pytest

bench: build
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/bench_breaker.py

clean:
	rm -rf build $(VENV) resil/*.so .pytest_cache .mypy_cache .hypothesis
