# Entry points, as the README promises:
#   make reproduce   install, train the main comparison of $(PRESET) (default: quick, the bundled
#                    digits set) from scratch into a fresh runs/reproduce-<time>/ folder (never
#                    over the committed results/), then check it against the committed records
#   make figures     redraw the tables and figures from the committed records in results/
#   make test        install, then run the test suite (notebooks and browser test included)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PRESET ?= quick

.PHONY: install reproduce figures test lint bench
install: $(VENV)/.tkd-installed

$(VENV)/.tkd-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

reproduce: install
	@fresh=runs/reproduce-$$(date +%Y%m%d-%H%M%S); \
	echo "training the $(PRESET) main comparison afresh into $$fresh"; \
	$(PY) -m tkd reproduce --preset $(PRESET) --main-only --jobs 2 --no-figures \
		--results $$fresh && \
	$(PY) -m tkd verify --preset $(PRESET) --fresh $$fresh

figures: install
	$(PY) -m tkd figures --preset $(PRESET)
	$(PY) tools/fill_readme.py

test: install
	$(PY) -m ruff check tkd tests bench notebooks tools
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check tkd tests bench notebooks tools

bench: install
	$(PY) bench/throughput.py
