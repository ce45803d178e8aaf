# Two commands on a fresh machine: `make serve` and `make test`. Both go through `make install`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 0.0.0.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install browser serve test lint bench bench-sync bench-load clean

install: $(VENV)/.installed

# torch is pinned to the CPU build first: an unpinned resolve would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

serve: install
	$(BIN)/embedsearch serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The search page's browser tests (tests/test_ui.py) drive Debian's Chromium: browser downloads
# fail here, so the system package it is (needs root, as on CI).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: lint browser
	$(BIN)/pytest -q

# Speed (model, HTTP ingest, concurrency), CLI ingestion, retrieval quality per backend, search
# at scale, then CLI start-up. Run as modules of the benchmarks package, from the repository root.
bench: install
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.quality
	$(BIN)/python -m benchmarks.search
	$(BIN)/python -m benchmarks.lexical
	$(BIN)/python -m benchmarks.cli_start

# Sources (tables kept in sync) and model migration under write and search load.
bench-sync: install
	$(BIN)/python -m benchmarks.sources
	$(BIN)/python -m benchmarks.migration

# 16 clients on /search/pgvector, /search hybrid and /embed, against the previous release.
bench-load: install
	$(BIN)/python -m benchmarks.load

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
