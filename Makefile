# Two commands set up and run everything on a fresh machine:
#   make train   create .venv if absent, install, run the main job (python train.py)
#   make test    same set-up, run the test suite
# Pass extra arguments with ARGS, e.g. make train ARGS="--config small".
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: train test bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 first: a CPU build that lies on this machine's disk.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_env.py

clean:
	rm -rf $(VENV) build *.egg-info
