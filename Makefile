# SEP-Nets toolkit. `make demo`: set up and run the main job; `make test`: set up and test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# stock Caffe's `caffe` tool; CAFFE=/path/to/caffe (e.g. your CUDA build) replaces it
CAFFE_TOOL := tools/caffe

.PHONY: help setup venv proto caffe test demo bench

help:
	@echo "make setup   virtualenv (.venv), upstream caffe.proto compiled, stock Caffe 1.0 rootfs"
	@echo "make demo    setup + the main job"
	@echo "make test    setup + the test suite"
	@echo "make bench   setup + benchmarks (ratios against stock Caffe, measured in the same run)"

# ---------------------------------------------------------------- set-up (idempotent)
setup: venv proto caffe

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	@echo "setup: python virtualenv $(VENV) with pinned requirements.txt"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

proto: venv
	$(PY) -m sepnets.proto_build

caffe:
	tools/setup_caffe.sh

# ---------------------------------------------------------------- tests
test: setup
	$(PY) -m pytest tests

# ---------------------------------------------------------------- the main job
demo: setup
	$(PY) tools/netinfo.py tests/nets/tiny_train.prototxt
	$(CAFFE_TOOL) time -model tests/nets/tiny_train.prototxt -iterations 10

# ---------------------------------------------------------------- benchmarks
# Each bench/bench_*.py measures one thing against stock Caffe (or Caffe's own tool) in the
# same run and prints the ratio.
bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# ---------------------------------------------------------------- the engine (Caffe on PyTorch)
# `$(CAFFE_ENGINE) train -solver S` is `caffe train -solver S` on PyTorch (CPU, or -gpu N):
# same files, flags and log lines; README "The engine". ENGINE=torch selects it.
CAFFE_ENGINE := $(PY) -m sepnets.caffe
