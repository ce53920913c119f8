# Patronage: `make run` (install, sample shop, train, serve) and `make test` (install, lint, tests).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SAMPLE := data/sample
HOST ?= 127.0.0.1
PORT ?= 8000
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
# Python caches compiled modules (.pyc) as it imports them. uv installs none (pip does), so
# with PYTHONDONTWRITEBYTECODE set (as on this machine) every process compiled pandas,
# scikit-learn, MLflow, ... from source again: their imports took 15.3 CPU-s in a fresh clone's
# venv against 5.5 with the cache, in each test worker, server and command. The first import
# writes the cache; __pycache__ is git-ignored. (uv's --compile-bytecode compiles every file
# of every package instead: 47 s more on a fresh clone's install.)
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install install-dev browser postgres run train test lint bench audit clean

# uv installs what pip would (same ranges, from PyPI) in about half the time (measured on this
# machine: 51 s with an empty uv cache against 111 s for pip with a warm one), which keeps a
# fresh clone's `make test` within its 10 minutes.
# uv first installs from its cache alone (--offline), then from the package index if the cache
# lacks anything (a new machine: the offline try stops at once, before installing anything).
# Online, uv asks the index again and rebuilds pyspark's source distribution on every install
# (measured on this machine with a warm cache: 78 s, 61 of them building pyspark); from the
# cache the same install takes 4 s. Both pick versions within pyproject.toml's ranges.
UV := $(BIN)/python -m uv pip install --quiet --python $(BIN)/python
UV_CACHED_FIRST = $(UV) --offline $(1) 2>/dev/null || { \
	echo "uv: not everything is in its cache; installing from the package index"; $(UV) $(1); }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call UV_CACHED_FIRST,-e .)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(call UV_CACHED_FIRST,-e '.[dev]')
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

$(SAMPLE)/purchases.csv: | $(VENV)/.installed
	$(BIN)/patronage generate --out $(SAMPLE)

# Train once per sample shop (later runs of `make run` reuse the registered champions;
# `make train` retrains and promotes only if no worse).
mlruns/.sample-trained: $(SAMPLE)/purchases.csv | $(VENV)/.installed
	$(BIN)/patronage train $(SAMPLE)
	touch $@

train: $(VENV)/.installed $(SAMPLE)/purchases.csv
	$(BIN)/patronage train $(SAMPLE) $(if $(wildcard data/events),--events data/events)
	touch mlruns/.sample-trained

run: $(VENV)/.installed mlruns/.sample-trained
	$(BIN)/patronage serve --shop sample --host $(HOST) --port $(PORT) --demo-keys --examples-from $(SAMPLE)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy features models training serving benchmarks patronage

# The CRM console's browser tests drive Debian's Chromium through Debian's chromedriver
# (tests/serving/test_crm_browser.py); installed here when either is missing (needs root).
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		echo "installing Debian's chromium and chromium-driver for the browser tests"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

# The PostgreSQL tests start a throwaway cluster with Debian's initdb and pg_ctl
# (benchmarks/postgres_cluster.py) unless PATRONAGE_TEST_DATABASE_URL names a server; the server
# binaries are installed here when missing (needs root).
postgres:
	@if [ -z "$$PATRONAGE_TEST_DATABASE_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& ! command -v initdb >/dev/null 2>&1; then \
		echo "installing Debian's postgresql for the PostgreSQL tests"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; \
	fi

# Two processes (the machine's two cores), each running whole test files, so a module's fixtures
# are built once. Files go out in tests/conftest.py's order (longest first), not xdist's default
# (most tests first), which left the longest files to start last.
# OpenMP at one thread too (scikit-learn's HistGradientBoosting outside a training run): two test
# processes on two cores, each with a pool of idle threads spinning for work, cost more CPU
# than they save (models/threads.py).
# mypy (about a minute of one core on a fresh clone, with no cache yet) checks the types beside
# the tests instead of before them; the target fails when either fails, mypy's report last.
test: export OMP_NUM_THREADS ?= 1
test: install-dev browser postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@echo "$(BIN)/mypy features models training serving benchmarks patronage (beside the tests)"
	@$(BIN)/mypy features models training serving benchmarks patronage > $(VENV)/mypy.log 2>&1 & \
	types=$$!; \
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder; tests=$$?; \
	wait $$types; typed=$$?; \
	echo "mypy:"; cat $(VENV)/mypy.log; \
	test $$tests -eq 0 && test $$typed -eq 0

bench: install-dev
	$(BIN)/python -m benchmarks.run_all

# Known vulnerabilities in the installed dependencies: pip-audit (in its own venv) against PyPI's
# advisory data. Needs the network; offline every package is "not audited", and --strict makes
# that a failure instead of a silent "No known vulnerabilities found".
audit: install
	test -x $(VENV)/audit/bin/pip-audit || ($(PYTHON) -m venv $(VENV)/audit && \
		$(VENV)/audit/bin/pip install --quiet 'pip-audit>=2.7')
	$(BIN)/pip freeze --exclude-editable > $(VENV)/audit-requirements.txt
	$(VENV)/audit/bin/pip-audit --strict --progress-spinner off --no-deps --disable-pip \
		-r $(VENV)/audit-requirements.txt

clean:
	rm -rf $(VENV) data/sample .pytest_cache .ruff_cache .mypy_cache
	find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -prune -exec rm -rf {} +
