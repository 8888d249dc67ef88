#!/usr/bin/env python3
"""The engine on a CUDA GPU: `make bench-gpu GPU=0` (python bench/bench_gpu.py --gpu 0). One
script, a few minutes on one H100/H200-class GPU, printing:

1. conformance: the engine on the GPU against the engine on the CPU on the nets the engine is
   proven on against stock Caffe (LeNet, the authors' ResNet-20, their GoogLeNet through
   inception_3a, a SEP module; TRAIN and TEST): every blob, input and parameter gradient and
   BatchNorm statistic within 1e-4 of its magnitude (TF32 off, here and below: Caffe's
   float32 arithmetic);
2. ResNet-20 (the authors' prototxt, batch 128) training images/s, its database (40x40 float
   records, crop 32, mirror, a mean file: the authors' padded CIFAR-10) staged in GPU memory
   (-stage_data) and read through the input pipeline (one worker per core, transformed on
   the GPU), and the projected time of the authors' 80,000 iterations (goal: < 10 minutes);
3. GoogLeNet (the authors', batch 128) training images/s on in-memory data (DummyData;
   goal >= 3,000) and through the input pipeline (an LMDB of 256x256 JPEGs, crop 224,
   mirror, mean values; uint8 batches copied to the GPU and transformed there);
4. the peak GPU memory of each run.
Without CUDA it refuses with one line. `--device cpu` runs it all on the CPU (the
conformance then compares the CPU with itself) and `--quick` with tiny sizes: how the test
suite checks this script where there is no GPU; those figures mean nothing.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import numpy as np
import torch

from bench.support import make_db, solver
from sepnets import paths
from sepnets.caffe import files, glog, images
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import data
from sepnets.engine.solver import SGDSolver, read_solver_params
from tests.support.datagen import pattern_image
from tests.support.engine import Case, compare, prepare, run_ours
from tests.support.nets import conformance_nets, with_data_layer

RESNET = paths.authors() / "resnet20_relu_msra_cifar10.prototxt"
GOOGLENET = paths.authors() / "googlenet_train_val.prototxt"
RTOL = 1e-4
SCHEDULE = 80000  # the authors' ResNet-20 iterations


class Sizes:
    def __init__(self, quick):
        self.batch = 2 if quick else 128
        self.resnet_records = 16 if quick else 1280
        self.jpegs = 8 if quick else 1024
        self.warmup, self.resnet_iters, self.googlenet_iters = (0, 1, 1) if quick else (5, 100, 30)


def conformance(device, work):
    """(name, compared, worst relative error, failures) per case, GPU against CPU."""
    rows = []
    for phase in ("TRAIN", "TEST"):
        for name, path, shape, classes in conformance_nets(paths.authors(), work):
            rng = np.random.default_rng(len(rows))
            inputs = {"data": rng.standard_normal(shape).astype(np.float32),
                      "label": rng.integers(0, classes, shape[:1]).astype(np.float32)}
            case = Case(f"{name}_{phase}", path, phase, inputs,
                        top_diffs=name == "googlenet_inception_3a")
            model, weights, rng = prepare(case, work)
            state = rng.bit_generator.state
            results = []
            for where in ("cpu", device):
                rng.bit_generator.state = state  # the same top diffs on both
                results.append(run_ours(case, model, weights, rng, device=where)[0])
            cpu, dev = results
            failures, compared = compare(dev, cpu, rtol=RTOL)
            worst = max((float(np.max(np.abs(dev[k] - cpu[k])) / max(np.max(np.abs(cpu[k])), 1e-30))
                         for k in cpu if np.size(cpu[k])), default=0.0)
            rows.append((case.name, compared, worst, failures))
    return rows


def jpeg_db(path, count, rng):
    """`count` 256x256 JPEG records (quality 95), as convert_imageset --encoded writes them."""
    with DatumWriter(path, "lmdb") as out:
        for i in range(count):
            jpeg = images.encode(pattern_image(rng, 256, 256), "jpg")
            out.put(caffe_pb2.Datum(data=jpeg, encoded=True, label=i % 1000))
    return path


def synthetic_net(src, dst, batch):
    """`src`'s TRAIN net fed by DummyData (constant values: filled once, in memory)."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter(name=net.name)
    layer = out.layer.add(name="data", type="DummyData", top=["data", "label"])
    layer.dummy_data_param.shape.add(dim=[batch, 3, 224, 224])
    layer.dummy_data_param.shape.add(dim=[batch])
    layer.dummy_data_param.data_filler.add(type="constant", value=0.5)
    layer.dummy_data_param.data_filler.add(type="constant", value=1)
    for src_layer in net.layer:
        if src_layer.type not in ("Data", "Input") and not any(
                rule.phase == caffe_pb2.TEST for rule in src_layer.include):
            out.layer.add().CopyFrom(src_layer)
    files.write_text(dst, out)
    return dst


def train_rate(path, device, batch, warmup, iterations, stage=False, workers=None):
    """(images/s, seconds per iteration, peak device memory in bytes or None)."""
    data.configure(workers=workers, stage=stage)
    try:
        trainer = SGDSolver(read_solver_params(str(path)), device, str(path))
        try:
            trainer.step(warmup)
            cuda = device.type == "cuda"
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            trainer.step(iterations)
            if cuda:
                torch.cuda.synchronize(device)
            seconds = (time.perf_counter() - start) / iterations
            peak = torch.cuda.max_memory_allocated(device) if cuda else None
        finally:
            trainer.close()
    finally:
        data.configure()
    return batch / seconds, seconds, peak


def training(device, work, sizes):
    rng = np.random.default_rng(0)
    rows = []
    make_db(work / "cifar", sizes.resnet_records, (3, 40, 40), 10, rng, floats=True)
    mean = work / "cifar_mean.binaryproto"
    files.write_blobproto(mean, rng.normal(0, 0.1, (1, 3, 40, 40)).astype(np.float32), legacy=True)
    cifar = caffe_pb2.TransformationParameter(crop_size=32, mirror=True, mean_file=str(mean))
    resnet = solver(work / "resnet.solver", with_data_layer(
        RESNET, work / "resnet.prototxt", work / "cifar", sizes.batch, cifar), 10**6, 0)
    for label, stage in (("staged in device memory", True), ("through the input pipeline", False)):
        rows.append((f"ResNet-20, batch {sizes.batch}, {label}",) + train_rate(
            resnet, device, sizes.batch, sizes.warmup, sizes.resnet_iters, stage=stage))
    synthetic = solver(work / "googlenet_mem.solver", synthetic_net(
        GOOGLENET, work / "googlenet_mem.prototxt", sizes.batch), 10**6, 0)
    rows.append((f"GoogLeNet, batch {sizes.batch}, in memory (DummyData)",) + train_rate(
        synthetic, device, sizes.batch, sizes.warmup, sizes.googlenet_iters))
    jpeg_db(work / "jpeg", sizes.jpegs, rng)
    imagenet = caffe_pb2.TransformationParameter(crop_size=224, mirror=True,
                                                 mean_value=[104, 117, 123])
    pipeline = solver(work / "googlenet_lmdb.solver", with_data_layer(
        GOOGLENET, work / "googlenet_lmdb.prototxt", work / "jpeg", sizes.batch, imagenet), 10**6, 0)
    cores = len(os.sched_getaffinity(0))
    rows.append((f"GoogLeNet, batch {sizes.batch}, JPEG LMDB, {cores} workers",) + train_rate(
        pipeline, device, sizes.batch, sizes.warmup, sizes.googlenet_iters, workers=cores))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", type=int, default=0, help="the CUDA device (default 0)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: check the script itself where there is no GPU")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checking the script)")
    args = parser.parse_args()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print(f"bench_gpu: CUDA is not available to torch here (torch {torch.__version__}); "
                  "these figures need a CUDA GPU", file=sys.stderr)
            return 2
        if not 0 <= args.gpu < torch.cuda.device_count():
            print(f"bench_gpu: no CUDA device {args.gpu} ({torch.cuda.device_count()} here)",
                  file=sys.stderr)
            return 2
        device = torch.device("cuda", args.gpu)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        where = f"GPU {args.gpu}: {torch.cuda.get_device_name(device)}"
    else:
        device, where = torch.device("cpu"), "CPU (checking the script: the figures mean nothing)"
    glog.configure(min_level=2)
    started = time.perf_counter()
    print(f"bench_gpu on {where}, torch {torch.__version__}, TF32 off")
    with tempfile.TemporaryDirectory(prefix="bench_gpu.") as tmp:
        work = Path(tmp)
        rows = conformance(device, work)
        print(f"1. conformance, {device.type} against the CPU (each blob within {RTOL:g} of its "
              "magnitude):")
        ok = True
        for name, compared, worst, failures in rows:
            ok &= not failures and compared > 0
            print(f"   {name:32s} {compared:4d} blobs, worst relative difference {worst:.2e}  "
                  f"{'ok' if not failures and compared else 'FAILED: ' + str(failures[:3])}")
        runs = training(device, work, Sizes(args.quick))
    print("2-4. training (forward, backward, update, data), images/s and peak device memory:")
    for name, rate, seconds, peak in runs:
        memory = f"{peak / 2**30:6.2f} GiB" if peak is not None else "     n/a"
        print(f"   {name:52s} {rate:9.0f} images/s  {seconds * 1000:8.1f} ms/iter  peak {memory}")
    staged = runs[0][2]
    print(f"   ResNet-20, the authors' {SCHEDULE:,} iterations at batch 128 (staged): "
          f"{SCHEDULE * staged / 60:.1f} minutes projected (goal < 10)")
    print(f"   GoogLeNet in memory: {runs[2][1]:.0f} images/s (goal >= 3,000)")
    print(f"done in {time.perf_counter() - started:.0f} s; conformance {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
