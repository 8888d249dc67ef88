#!/usr/bin/env python3
"""Quantizing a GoogLeNet-sized caffemodel: quant_pattern.py against the pycaffe route.

The model has the authors' GoogLeNet shapes (googlenet_train_val.prototxt, TEST phase, the
auxiliary classifiers included as in a real snapshot) and random weights. Both sides are timed
inside their process (interpreter start-up and imports excluded), best of REPEATS:
  ours     quant_pattern's main: read the caffemodel, binarize 3x3 and 5x5, write the new
           caffemodel, compute the per-layer report;
  pycaffe  caffe.Net(prototxt, TEST, weights=...), binarize the same layers' net.params in
           numpy, net.save(...).
Ours writes atomically and fsyncs the output before the rename (about 60 ms of the total for
53 MB here); net.save does neither. Target: ours no slower than pycaffe (ratio >= 1).
"""
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import numpy as np

from sepnets import paths
from sepnets.caffe import files, netstate
from sepnets.cli import quant_pattern
from sepnets.patterns import selection
from tests.support import models, pycaffe

GOOGLENET = paths.authors() / "googlenet_train_val.prototxt"
REPEATS = 3
OFFSET = 0.06
FILTERS = ["3x3", "5x5"]




def deploy_net(path):
    """The TEST-phase net with its Data layer replaced by a batch-1 Input layer."""
    net = netstate.filter_net(files.read_net(path), "TEST", 0, ())
    for layer in net.layer:
        if layer.type == "Data":
            crop = layer.transform_param.crop_size
            layer.type = "Input"
            layer.ClearField("data_param")
            layer.ClearField("transform_param")
            layer.input_param.shape.add(dim=[1, 3, crop, crop])
            layer.input_param.shape.add(dim=[1])
    return net


def random_model(net, seed=0):
    rng = np.random.default_rng(seed)
    return models.model_for(net, lambda shape: (0.05 * rng.standard_normal(shape)).astype(np.float32))


def time_ours(model_path, out_path):
    argv = ["--offset", str(OFFSET), "--filter", *FILTERS, "--model", str(model_path),
            "--output", str(out_path)]
    best = None
    for _ in range(REPEATS):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pattern.main(argv)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    return best


def main():
    if not GOOGLENET.is_file():
        sys.exit(f"bench_quant: the authors' {GOOGLENET} is missing (set SEPNETS_SHARED)")
    with tempfile.TemporaryDirectory(prefix="bench_quant_") as tmp:
        tmp = Path(tmp)
        net = deploy_net(GOOGLENET)
        proto = files.write_text(tmp / "googlenet_deploy.prototxt", net)
        model = random_model(net)
        weights = files.write_model(tmp / "googlenet_random.caffemodel", model)
        selector = selection.Selector(selection.parse_filters(FILTERS))
        names = [layer.name for layer in selector.select(model.layers())]
        size = weights.stat().st_size
        print(f"GoogLeNet-sized caffemodel: {size / 1e6:.1f} MB, "
              f"{sum(b.size for v in model.blobs.values() for b in v):,} parameters; binarizing "
              f"{len(names)} layers ({' '.join(FILTERS)}) at a = {OFFSET}")
        ours = time_ours(weights, tmp / "ours.caffemodel")
        theirs = pycaffe.run_json("quant_route", proto, weights, tmp / "pycaffe.caffemodel",
                                  OFFSET, REPEATS, *names)["seconds"]
        a = files.read_model(tmp / "ours.caffemodel")
        b = files.read_model(tmp / "pycaffe.caffemodel")
        same = all(np.array_equal(a.blobs[n][i], b.blobs[n][i])
                   for n in b.blobs for i in range(len(b.blobs[n])))
        print(f"  quant_pattern (read, binarize, atomic+fsync write, report): {ours:.3f} s")
        print(f"  pycaffe route (load net with weights, edit, net.save): {theirs:.3f} s")
        print(f"  identical blobs in both outputs: {'yes' if same else 'NO'}")
        print(f"ratio pycaffe / quant_pattern: {theirs / ours:.2f}x (target >= 1)")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
