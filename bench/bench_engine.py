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
Target: the engine at least 5x faster than stock Caffe on ResNet-20. The engine's GPU
figures are bench_gpu.py's (`make bench-gpu GPU=0`).
"""
import os
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import numpy as np

from bench.support import engine_command, make_db, run, seconds_per_iteration, solver
from sepnets import paths
from sepnets.caffe import engines, files
from sepnets.caffe import stock as stockcaffe
from sepnets.caffe.proto import caffe_pb2
from tests.support.nets import with_data_layer

RESNET = paths.authors() / "resnet20_relu_msra_cifar10.prototxt"
LENET = REPO / "tests" / "nets" / "engine" / "lenet.prototxt"
ROUNDS = 2
AVERAGE = re.compile(r"\] Average Forward-Backward: ([\d.e+-]+) ms\.")


def time_forward_backward(log):
    """`caffe time`'s Average Forward-Backward, in seconds."""
    found = AVERAGE.findall(log)
    if not found:
        raise SystemExit("bench_engine: no Average Forward-Backward line:\n" + log[-2000:])
    return float(found[-1]) / 1000


def bench(name, work, net, iterations, display, stock_iterations, time_iterations):
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
    return row


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_engine.") as tmp:
        work = Path(tmp)
        make_db(work / "cifar", 1280, (3, 40, 40), 10, rng)
        mean = work / "mean.binaryproto"
        files.write_blobproto(mean, rng.uniform(100, 150, (1, 3, 40, 40)).astype(np.float32),
                                legacy=True)
        cifar = caffe_pb2.TransformationParameter(crop_size=32, mirror=True, mean_file=str(mean))
        resnet = with_data_layer(RESNET, work / "resnet20.prototxt", work / "cifar", 128, cifar)
        make_db(work / "mnist", 640, (1, 28, 28), 10, rng)
        mnist = caffe_pb2.TransformationParameter(scale=0.00390625)
        lenet = with_data_layer(LENET, work / "lenet.prototxt", work / "mnist", 64, mnist)
        rows = [bench("ResNet-20 (batch 128)", work, resnet, 20, 2, 10, 5),
                bench("LeNet (batch 64)", work, lenet, 200, 20, 200, 50)]
    print(f"CPU: {os.cpu_count()} cores; seconds per training iteration (forward, backward, "
          "update, data), measured in this run")
    print(f"{'':24s} {'training iteration':>33s} | {'`time` Average Forward-Backward':>33s}")
    print(f"{'net':24s} {'stock Caffe':>12s} {'engine':>10s} {'speed-up':>9s} | "
          f"{'stock Caffe':>12s} {'engine':>10s} {'speed-up':>9s}")
    for row in rows:
        print(f"{row['net']:24s} {row['stock_s']:12.4f} {row['engine_s']:10.4f} "
              f"{row['stock_s'] / row['engine_s']:8.2f}x | {row['stock_time_s']:12.4f} "
              f"{row['engine_time_s']:10.4f} {row['stock_time_s'] / row['engine_time_s']:8.2f}x")
    ratio = rows[0]["stock_s"] / rows[0]["engine_s"]
    print(f"ResNet-20 target: engine >= 5x stock Caffe: {'met' if ratio >= 5 else 'NOT met'} "
          f"({ratio:.2f}x); the engine on a GPU: make bench-gpu GPU=0 (bench/bench_gpu.py)")


if __name__ == "__main__":
    main()
