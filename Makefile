# The two commands of the README: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install demo test lint bench bench-cluster down clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) scripts/demo.py

lint: install
	$(VENV)/bin/ruff check node tests scripts
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: install
	$(PY) scripts/bench_engine.py

down: install
	$(VENV)/bin/murmur down

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
