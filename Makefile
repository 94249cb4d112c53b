# Two entry points, as the README promises:
#   make reproduce   install, then run the paper's experiments on the embedded digits set
#   make test        install, then run the test suite (notebooks and browser test included)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= quick

.PHONY: install reproduce test lint bench
install: $(VENV)/.tkd-installed

$(VENV)/.tkd-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

reproduce: install
	$(PY) -m tkd reproduce --preset $(PRESET)

test: install
	$(PY) -m ruff check tkd tests bench notebooks
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check tkd tests bench notebooks

bench: install
	$(PY) bench/throughput.py
