# Two commands for a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Jupyter refuses to start as root (Docker, cloud VMs, CI) unless told it may.
ALLOW_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: install browser demo test lab app bench student grade clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# PYTHONWARNINGS=ignore: setuptools' build backend boxes an informational "Editable installation"
# warning into every install's output (issue 19: make demo prints no setuptools warning).
$(STAMP): $(PY) pyproject.toml
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the browser tests (never a browser downloaded by a test tool).
browser:
	@test -x /usr/bin/chromium || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: install
	@mkdir -p build/notebooks
	$(PY) -m capstone.notebooks run --out build/notebooks $(NOTEBOOKS)

test: install browser
	$(PY) -m pytest --nbmake tests notebooks

lab: install
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks $(ALLOW_ROOT)

# Voila on 127.0.0.1 with the kernel websocket guard and kernel culling (capstone/apps/server.py).
app: install
	$(PY) -m capstone.app

bench: install
	$(PY) benchmarks/run.py

# The student edition: notebooks/ with each exercise's answer cleared (nbgrader), in build/student.
student: install
	$(PY) -m capstone student --out build/student

# Grade DIR/<student>/NN_name.ipynb: a student x exercise table, printed and in DIR/grades.csv.
grade: install
	@test -n "$(DIR)" || { echo "usage: make grade DIR=folder-of-completed-student-notebooks"; exit 2; }
	$(PY) -m capstone grade "$(DIR)"

clean:
	rm -rf build .pytest_cache .hypothesis
