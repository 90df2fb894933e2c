# The two commands of the README: `make demo` and `make test`. Both set everything up on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: install browser demo test lint bench bench-cluster down clean

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

# The browser tests drive Debian's Chromium (tests/browser): installed once, quietly, when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  echo "installing Debian's chromium and chromium-driver for the browser tests"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver) \
	    >/dev/null 2>&1 || { echo "make browser: apt-get install chromium chromium-driver failed" >&2; exit 1; }; \
	fi

test: install lint browser
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: install
	$(PY) scripts/bench_engine.py

down: install
	$(VENV)/bin/murmur down

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis
