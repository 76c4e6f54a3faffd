# The single entry point. A fresh machine needs only Python 3 (3.10-3.13).
#   make attack   set up, then run the course's default attack end to end
#   make test     set up, then run every test
#   make lab      open the lessons in JupyterLab
#   make bench    measure training speed and memory (writes benchmarks/results/)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup attack test lab bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

attack: setup
	$(PY) -m helpers.attack --out artifacts

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) benchmarks/bench_training.py

clean:
	rm -rf .cache artifacts .pytest_cache .hypothesis
