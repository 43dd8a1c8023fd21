# Two commands set everything up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
STAMP := $(VENV)/.installed

.PHONY: run test bench demo clean venv

venv: $(STAMP)

# The venv is (re)built from the repo's own pinned lock files whenever they change.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# End to end on the built-in national demo collection.
run: $(STAMP)
	$(VENV)/bin/lab2fab demo --if-missing
	$(VENV)/bin/lab2fab run

# Two pytest-xdist workers, one per core: tests/conftest.py builds what many tests share (the demo
# collection and its runs) once, and keeps the tests of a module-scoped fixture on one worker.
# `make test TEST_WORKERS=0` runs everything in one process; the slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=20

# make bench BENCH_ARGS="--quick --repeats 1" for a short look (bench/run.py --help)
bench: $(STAMP)
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf data/landing data/warehouse data/history data/published data/gx

# Debian's Chromium (and Noto fonts for Vietnamese) for the report's headless-browser test (issue 7).
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-noto-core)
