#!/usr/bin/env python3
"""The input pipeline: stock Caffe's Data layer against the engine's, and prepare_imagenet.py
against convert_imageset, on this machine, in the same run.

Data layers, as images/s of a data-bound training (the Data layer, a global average pooling
and one InnerProduct with its loss, `caffe train` and `python -m sepnets.caffe train`; the time
per iteration from each log's display lines, the fastest interval after start-up, best of
ROUNDS runs each, alternately):
  (a) JPEG   an LMDB of 256x256 JPEGs written by convert_imageset --encoded (resized, so
             re-encoded at quality 95), crop 224, mirror, mean_value 104/117/123, batch 32
  (b) float  40x40 float records (the authors' padded CIFAR-10), crop 32, mirror, a mean
             file, batch 128
the engine with 1 worker process and with one per core (-data_workers), stock Caffe with its
one prefetch thread. Goals on 2 cores: (a) >= 2x stock Caffe, (b) >= 1x.

Converting an image list: IMAGES generated 500x375 JPEGs (ImageNet's typical size) resized to
256x256 into an LMDB, as create_imagenet.sh does; whole commands timed (start-up included),
best of ROUNDS; the records are byte-identical (checked). Goals: >= 1x at -j 1, >= 1.8x at -j 2.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import cv2
import numpy as np

from bench.support import engine_command, make_db, run, seconds_per_iteration, solver
from sepnets.caffe import db, files
from sepnets.caffe import stock as stockcaffe
from sepnets.caffe.proto import caffe_pb2

ROUNDS = 2
IMAGES = 1000  # enough that start-up (about 0.5 s for ours) does not decide the ratio
CORES = len(os.sched_getaffinity(0))
LOGGING = dict(os.environ, GLOG_minloglevel="0")  # the display lines are the clock


def data_bound_net(path, source, batch, transform):
    net = caffe_pb2.NetParameter(name="data_bound")
    data = net.layer.add(name="data", type="Data", top=["data", "label"])
    data.data_param.source, data.data_param.batch_size = str(source), batch
    data.data_param.backend = caffe_pb2.DataParameter.LMDB
    data.transform_param.CopyFrom(transform)
    pool = net.layer.add(name="pool", type="Pooling", bottom=["data"], top=["pool"])
    pool.pooling_param.pool = caffe_pb2.PoolingParameter.AVE
    pool.pooling_param.global_pooling = True
    ip = net.layer.add(name="ip", type="InnerProduct", bottom=["pool"], top=["ip"])
    ip.inner_product_param.num_output = 1000
    ip.inner_product_param.weight_filler.type = "xavier"
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["ip", "label"], top=["loss"])
    files.write_text(path, net)
    return path


def jpeg_files(directory, count, rng):
    """`count` 500x375 JPEGs (quality 90) and their list file."""
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(count):
        pixels = np.stack([(xx * (i % 7 + 1) + yy) % 256, (xx + yy * 3 + i) % 256,
                           rng.integers(0, 256, (375, 500))], -1).astype(np.uint8)
        cv2.imwrite(str(directory / f"{i:04d}.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    listing = directory / "list.txt"
    listing.write_text("".join(f"{i:04d}.jpg {i % 1000}\n" for i in range(count)))
    return listing


def data_layers(work, name, net, batch, iterations, display):
    """images/s of stock Caffe and of the engine with 1 and CORES workers."""
    path = solver(work / f"{name}.solver", net, iterations, display)
    rates = {"stock": [], 1: [], CORES: []}
    for _ in range(ROUNDS):
        rates["stock"].append(batch / seconds_per_iteration(run(
            stockcaffe.caffe_command() + ["train", "-solver", path], work, "bench_data", LOGGING,
            finished="caffe.cpp:250] Optimization Done.")))
        for workers in sorted({1, CORES}):
            log = run(engine_command(path, f"-data_workers={workers}"), REPO, "bench_data", LOGGING)
            rates[workers].append(batch / seconds_per_iteration(log, "bench_data"))
    return {key: max(values) for key, values in rates.items() if values}


def timed(argv, out, env=None):
    best = None
    for _ in range(ROUNDS):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        start = time.perf_counter()
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, env=env)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    return best


def conversion(work, listing):
    env = dict(os.environ, GLOG_minloglevel="2")
    theirs = timed([stockcaffe.CAFFE_BIN_TOOL, "convert_imageset", "--resize_height=256",
                    "--resize_width=256", f"{work}/", listing, work / "theirs"], work / "theirs", env)
    ours = {}
    for jobs in sorted({1, CORES}):
        ours[jobs] = timed([sys.executable, REPO / "tools/prepare_imagenet.py", "--root", work,
                            "--list", listing, "--resize", "256", "-j", jobs, "--out",
                            work / "ours"], work / "ours")
    same = dict(db.iter_records(work / "ours", "lmdb")) == dict(db.iter_records(work / "theirs", "lmdb"))
    return theirs, ours, same


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_data.") as tmp:
        work = Path(tmp)
        listing = jpeg_files(work, IMAGES, rng)
        stockcaffe.run_caffe_program("convert_imageset", [
            "--encoded", "--resize_height=256", "--resize_width=256", "--shuffle", f"{work}/",
            listing, work / "jpeg_lmdb"], quiet=True)
        jpeg = caffe_pb2.TransformationParameter(crop_size=224, mirror=True,
                                                 mean_value=[104, 117, 123])
        net_a = data_bound_net(work / "jpeg.prototxt", work / "jpeg_lmdb", 32, jpeg)
        make_db(work / "float_lmdb", 1280, (3, 40, 40), 10, rng, floats=True)
        mean = work / "mean.binaryproto"
        files.write_blobproto(mean, rng.normal(0, 0.1, (1, 3, 40, 40)).astype(np.float32),
                              legacy=True)
        floats = caffe_pb2.TransformationParameter(crop_size=32, mirror=True, mean_file=str(mean))
        net_b = data_bound_net(work / "float.prototxt", work / "float_lmdb", 128, floats)
        rows = [("(a) JPEG 256x256 -> 224, batch 32", data_layers(work, "a", net_a, 32, 90, 15), 2.0),
                ("(b) float 40x40 -> 32, batch 128", data_layers(work, "b", net_b, 128, 60, 10), 1.0)]
        theirs, ours, same = conversion(work, listing)
    print(f"{CORES} cores; Data layer images/s (a data-bound training), best of {ROUNDS}")
    print(f"{'':36s} {'stock Caffe':>11s} {'engine, 1 worker':>17s} "
          f"{f'engine, {CORES} workers':>18s}  ratios (goal)")
    for name, rates, goal in rows:
        ratios = [rates[w] / rates["stock"] for w in sorted({1, CORES})]
        print(f"{name:36s} {rates['stock']:11.0f} {rates[1]:17.0f} {rates[CORES]:18.0f}  "
              + " / ".join(f"{r:.2f}x" for r in ratios) + f" (>= {goal:g}x)")
    print(f"{IMAGES} JPEGs 500x375 -> 256x256 LMDB, best of {ROUNDS}; records identical: {same}")
    print(f"  convert_imageset      {theirs:7.2f} s  ({IMAGES / theirs:6.1f} images/s)")
    for jobs, seconds in ours.items():
        goal = 1.0 if jobs == 1 else 1.8
        print(f"  prepare_imagenet -j {jobs:<2d} {seconds:7.2f} s  ({IMAGES / seconds:6.1f} images/s)"
              f"  ratio {theirs / seconds:.2f} (goal >= {goal:g})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
