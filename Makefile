# tradesense-exporter: `make test` and `make demo` do all the set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck unit unit-fast system-deps venv bench clean runbook-base

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check exporter tests bench examples scripts
	$(VENV)/bin/mypy

typecheck: lint

unit: $(STAMP)
	$(VENV)/bin/pytest -q

# The inner loop: the unit tests only (tests/conftest.py says what an e2e test is).
unit-fast: $(STAMP)
	$(VENV)/bin/pytest -q -x -m "not e2e and not slow"

test: system-deps $(STAMP) lint unit

demo: system-deps $(STAMP)
	@scripts/demo.sh

bench: system-deps $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/redis_scrape.py
	$(PY) bench/http_overhead.py
	$(PY) bench/http_overhead.py --breakdown
	$(PY) bench/http_overhead.py --footprint
	$(PY) bench/cache_record.py

# Where alerts/runbooks.md is rendered: every alert's runbook_url starts with it.
runbook-base:
	$(PYTHON) scripts/set_runbook_base.py "$(URL)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
