# The two commands of the README.  Each does all of its own set-up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest

.PHONY: setup demo scenarios test test-full test-unit lab-up lab-down guest typecheck bench clean

setup:
	./scripts/setup.sh

## make demo: lab up, guest built, a real two-host migration, results printed.
demo: setup
	./scripts/demo.sh

## make scenarios: the full scenario set on the lab, each scenario's time printed.
scenarios: setup
	$(PY) -m multihost_migration.lab.demo --cfg cfg/scenario-set.cfg --timeout 1500

## make test: the suite that CI runs (< 45 min here): types (mypy --strict,
## pinned in pyproject.toml), the import layers, then the tests.
test: setup
	$(VENV)/bin/mypy --strict multihost_migration
	$(PY) tests/unit/test_layers.py
	$(PYTEST) -q -m "not slow" tests

## make test-full: everything, endurance and the full scenario set included.
test-full: setup
	$(VENV)/bin/mypy --strict multihost_migration
	$(PY) tests/unit/test_layers.py
	$(PYTEST) -q tests

test-unit: setup
	$(PYTEST) -q tests/unit

typecheck: setup
	$(VENV)/bin/mypy --strict multihost_migration

lab-up: setup
	$(VENV)/bin/mhm lab up

lab-down:
	$(VENV)/bin/mhm lab down

bench: setup
	$(PY) benchmarks/sync_bench.py
	$(PY) benchmarks/migration_overhead.py 5
	$(PY) benchmarks/cartesian_bench.py
