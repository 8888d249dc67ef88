#!/usr/bin/env python3
"""Training speed of the engine against stock Caffe on this machine's CPU, same run.

Both train the same nets with the same solver on the same generated LMDB through their
command lines (`tools/caffe train` and `python -m sepnets.caffe train`), data reading and
transformation included:
  ResNet-20  the authors' resnet20_relu_msra_cifar10.prototxt, batch 128, 40x40 padded
             records cropped to 32x32 with mirror and a mean file, as the authors trained;
  LeNet      tests/nets/engine/lenet.prototxt's layers on 28x28 records, batch 64.
The time per iteration comes from each log's own "Iteration N (x iter/s, ys/K iters)" lines
(read with the same parser), skipping the first interval (start-up). The two engines run
alternately, ROUNDS times each, and each is credited with its fastest display interval, so
a burst of load from other processes on a shared machine does not decide the ratio.
Next to these, each engine's `time` command on the same net (TRAIN phase, data included)
reports its Average Forward-Backward: the engine's times the fused passes training runs, so
its ratio to stock's `time` should be close to the training ratio.
Target: the engine at least 5x faster than stock Caffe on ResNet-20.
With `--gpu N` (CUDA) it also times the engine on that device: seconds per iteration on the
same data, images/s for ResNet-20 (batch 128) and the authors' GoogLeNet (batch 32) on
synthetic in-memory data (DummyData), and the projected time of the authors' 80,000-iteration
ResNet-20 schedule.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import numpy as np

from sepnets import paths
from sepnets.caffe import engines, files
from sepnets.caffe import stock as stockcaffe
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2

RESNET = paths.authors() / "resnet20_relu_msra_cifar10.prototxt"
GOOGLENET = paths.authors() / "googlenet_train_val.prototxt"
LENET = REPO / "tests" / "nets" / "engine" / "lenet.prototxt"
ROUNDS = 2
TIMING = re.compile(r"\] Iteration (\d+) \(([\d.e+-]+) iter/s, ([\d.e+-]+)s/(\d+) iters\)")
AVERAGE = re.compile(r"\] Average Forward-Backward: ([\d.e+-]+) ms\.")


def make_db(path, count, shape, classes, rng):
    with DatumWriter(path, "lmdb") as out:
        for i in range(count):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            out.put(caffe_pb2.Datum(channels=shape[0], height=shape[1], width=shape[2],
                                    data=image.tobytes(), label=int(i % classes)))


def train_net(src, dst, source, batch, transform, data_shape=None):
    """`src` with its Data layers reading `source` (an Input-fed net gets a Data layer)."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    if not any(layer.type == "Data" for layer in net.layer):
        out.layer.add(name="data", type="Data", top=["data", "label"])
    for layer in net.layer:  # the TRAIN net's layers (the bench runs no test)
        if layer.type == "Input" or any(rule.phase == caffe_pb2.TEST for rule in layer.include):
            continue
        out.layer.add().CopyFrom(layer)
    for layer in out.layer:
        if layer.type == "Data":
            layer.ClearField("image_data_param")
            layer.data_param.source = str(source)
            layer.data_param.backend = caffe_pb2.DataParameter.LMDB
            layer.data_param.batch_size = batch
            layer.transform_param.Clear()
            layer.transform_param.MergeFrom(transform)
    files.write_text(dst, out)
    return dst


def synthetic_net(src, dst, shape):
    """`src`'s TRAIN net fed by a DummyData layer of constant values: filled once, in memory."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter(name=net.name)
    data = out.layer.add(name="data", type="DummyData", top=["data", "label"])
    data.dummy_data_param.shape.add(dim=shape)
    data.dummy_data_param.shape.add(dim=shape[:1])
    data.dummy_data_param.data_filler.add(type="constant", value=0.5)
    data.dummy_data_param.data_filler.add(type="constant", value=1)
    for layer in net.layer:
        if layer.type not in ("Data", "Input") and not any(
                rule.phase == caffe_pb2.TEST for rule in layer.include):
            out.layer.add().CopyFrom(layer)
    files.write_text(dst, out)
    return dst


def solver(path, net, iterations, display):
    path.write_text(f'net: "{net}"\nbase_lr: 0.01\nmomentum: 0.9\nweight_decay: 0.0001\n'
                    f'lr_policy: "multistep"\ngamma: 0.1\nstepvalue: {iterations // 2}\n'
                    f"display: {display}\nmax_iter: {iterations}\nsnapshot_after_train: false\n"
                    f'snapshot_prefix: "{path.parent / "snap"}"\nrandom_seed: 1\n')
    return path


def seconds_per_iteration(log):
    """The fastest display interval's seconds per iteration, after the start-up interval."""
    spans = [(float(s), int(k)) for _, _, s, k in TIMING.findall(log)]
    spans = spans[2:]  # iteration 0's line, then the first interval (start-up, warm-up)
    if not spans:
        raise SystemExit("bench_engine: too few display lines to time:\n" + log[-2000:])
    return min(s / k for s, k in spans)


def time_forward_backward(log):
    """`caffe time`'s Average Forward-Backward, in seconds."""
    found = AVERAGE.findall(log)
    if not found:
        raise SystemExit("bench_engine: no Average Forward-Backward line:\n" + log[-2000:])
    return float(found[-1]) / 1000


def run(argv, cwd):
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench_engine: {' '.join(map(str, argv))} failed:\n{proc.stderr[-3000:]}")
    return proc.stderr


def engine_command(solver_path, gpu=None):
    cmd = engines.engine_command("torch") + ["train", "-solver", str(solver_path)]
    return cmd + (["-gpu", str(gpu)] if gpu is not None else [])


def bench(name, work, net, iterations, display, stock_iterations, time_iterations, gpu=None):
    engine_solver = solver(work / f"{name}_engine.solver", net, iterations, display)
    stock_solver = solver(work / f"{name}_stock.solver", net, stock_iterations, display)
    ours, stock = [], []
    for _ in range(ROUNDS):
        stock.append(seconds_per_iteration(run(stockcaffe.caffe_command() + [
            "train", "-solver", stock_solver], work)))
        ours.append(seconds_per_iteration(run(engine_command(engine_solver), REPO)))
    row = {"net": name, "engine_s": min(ours), "stock_s": min(stock)}
    timed = ["time", "-model", str(net), "-iterations", str(time_iterations)]
    row["stock_time_s"] = time_forward_backward(run(stockcaffe.caffe_command() + timed, work))
    row["engine_time_s"] = time_forward_backward(
        run(engines.engine_command("torch") + timed, REPO))
    if gpu is not None:
        row["gpu_s"] = seconds_per_iteration(run(engine_command(engine_solver, gpu), REPO))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", type=int, help="also time the engine on this CUDA device")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_engine.") as tmp:
        work = Path(tmp)
        make_db(work / "cifar", 1280, (3, 40, 40), 10, rng)
        mean = work / "mean.binaryproto"
        files.write_blobproto(mean, rng.uniform(100, 150, (1, 3, 40, 40)).astype(np.float32),
                                legacy=True)
        cifar = caffe_pb2.TransformationParameter(crop_size=32, mirror=True, mean_file=str(mean))
        resnet = train_net(RESNET, work / "resnet20.prototxt", work / "cifar", 128, cifar)
        make_db(work / "mnist", 640, (1, 28, 28), 10, rng)
        mnist = caffe_pb2.TransformationParameter(scale=0.00390625)
        lenet = train_net(LENET, work / "lenet.prototxt", work / "mnist", 64, mnist)
        rows = [bench("ResNet-20 (batch 128)", work, resnet, 20, 2, 10, 5, args.gpu),
                bench("LeNet (batch 64)", work, lenet, 200, 20, 200, 50, args.gpu)]
        gpu_rows = []
        if args.gpu is not None:
            for name, src, shape in (("ResNet-20", RESNET, [128, 3, 32, 32]),
                                     ("GoogLeNet", GOOGLENET, [32, 3, 224, 224])):
                net = synthetic_net(src, work / f"{name}_synthetic.prototxt", shape)
                path = solver(work / f"{name}_gpu.solver", net, 60, 10)
                seconds = seconds_per_iteration(run(engine_command(path, args.gpu), REPO))
                gpu_rows.append((f"{name} (batch {shape[0]}, synthetic)", shape[0] / seconds))
    print(f"CPU: {os.cpu_count()} cores; seconds per training iteration (forward, backward, "
          "update, data), measured in this run")
    print(f"{'':24s} {'training iteration':>33s} | {'`time` Average Forward-Backward':>33s}")
    print(f"{'net':24s} {'stock Caffe':>12s} {'engine':>10s} {'speed-up':>9s} | "
          f"{'stock Caffe':>12s} {'engine':>10s} {'speed-up':>9s}"
          + (f" {'engine GPU':>11s}" if args.gpu is not None else ""))
    for row in rows:
        line = (f"{row['net']:24s} {row['stock_s']:12.4f} {row['engine_s']:10.4f} "
                f"{row['stock_s'] / row['engine_s']:8.2f}x | {row['stock_time_s']:12.4f} "
                f"{row['engine_time_s']:10.4f} {row['stock_time_s'] / row['engine_time_s']:8.2f}x")
        if "gpu_s" in row:
            line += f" {row['gpu_s']:11.4f}"
        print(line)
    ratio = rows[0]["stock_s"] / rows[0]["engine_s"]
    print(f"ResNet-20 target: engine >= 5x stock Caffe: {'met' if ratio >= 5 else 'NOT met'} "
          f"({ratio:.2f}x)")
    if gpu_rows:
        import torch
        print(f"GPU {args.gpu}: {torch.cuda.get_device_name(args.gpu)}")
        for name, images in gpu_rows:
            print(f"{name:36s} {images:10.0f} images/s")
        hours = 80000 * rows[0]["gpu_s"] / 3600
        print(f"ResNet-20 80,000 iterations (batch 128, LMDB data) projected: {hours:.2f} h")


if __name__ == "__main__":
    main()
