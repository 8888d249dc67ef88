#!/usr/bin/env python3
"""Deploy-net inference: ONNX Runtime against stock Caffe's TEST forward, same weights, same run.

For LeNet, ResNet-20, SEP-Net small and GoogLeNet (prototxt/<net>/deploy.prototxt, weights
from the fillers saved by stock pycaffe, BatchNorm at mean 0, variance 1): images/s at batch
1 and 32, each side timed in its own process around the forward call only (pycaffe:
net.forward(); ONNX Runtime: session.run with its default threads), best of REPEATS after one
warm-up pass, and the ratio. Two ONNX files per net: float32 (the caffemodel as it is) and
patterns (every k x k convolution but the first binarized with quant_pattern.py's rule at
a = OFFSET, INT2 signs in the file): the second shows what its DequantizeLinear nodes cost at
run time, no more, with ONNX Runtime's default options (which keep them, for its QDQ fusions)
and with `session.disable_quant_qdq` (they are folded into float32 weights when the session
loads). The first image's outputs are checked against stock Caffe's (1e-4 relative).
"""
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from sepnets.bootstrap import ensure_venv

ensure_venv()
import numpy as np
import onnxruntime

from sepnets import deploy
from sepnets.caffe import files
from sepnets.nets import analysis
from sepnets.patterns import quantize
from sepnets.patterns.selection import Selector, parse_filters
from tests.support import pycaffe

NETS = ["lenet", "resnet20", "sepnet_small", "googlenet"]
BATCHES = [1, 32]
REPEATS = 3
OFFSET = 0.05


def ort_seconds(path, x, fold=False):
    """Best time of session.run on `x`; fold: ONNX Runtime's QDQ handling off, so that the
    constant DequantizeLinear nodes of the weights are folded when the session loads."""
    options = onnxruntime.SessionOptions()
    if fold:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    out = session.run(None, feed)[0]
    best = None
    for _ in range(REPEATS):
        start = time.perf_counter()
        session.run(None, feed)
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    return best, out


def patterned(weights, output):
    """The caffemodel with its k x k convolutions binarized (quant_pattern.py's selection)."""
    model = files.read_model(weights)
    layers = quantize.select_layers(model, weights, Selector(parse_filters(["kxk"])))
    files.write_model(output, quantize.quantize_model(model, layers, OFFSET)[0])
    return output


def main():
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        tmp = Path(tmp)
        specs, inputs = [], {}
        for name in NETS:
            proto = REPO / "prototxt" / name / "deploy.prototxt"
            shape = analysis.analyze(proto).blob_shapes["data"]
            inputs[name] = rng.standard_normal((max(BATCHES), *shape[1:])).astype(np.float32)
            np.save(tmp / f"{name}.npy", inputs[name])
            specs.append(f"{proto}|{tmp / name}.caffemodel|{REPEATS}|{tmp / name}.npy")
        caffe = pycaffe.run_json("deploy_timing", *specs, timeout=1200)
        print(f"images/s, best of {REPEATS} forward passes (stock Caffe 1.0 CPU, pycaffe; ONNX Runtime "
              f"{onnxruntime.__version__} CPU, default threads); ratio = ONNX Runtime / Caffe")
        print(f"{'net':<13} {'batch':>5} {'Caffe':>9} {'ORT float32':>12} {'ratio':>6} "
              f"{'ORT patterns':>13} {'ratio':>6} {'(DQ folded)':>12} {'ratio':>6}")
        ok = True
        for name, spec in zip(NETS, specs):
            proto, weights = spec.split("|")[:2]
            float_onnx, pattern_onnx = tmp / f"{name}.onnx", tmp / f"{name}_patterns.onnx"
            deploy.export(proto, weights, float_onnx)
            deploy.export(proto, patterned(weights, tmp / f"{name}_patterns.caffemodel"), pattern_onnx)
            for batch in BATCHES:
                x = inputs[name][:batch]
                theirs = caffe[proto][str(batch)]
                ours, prob = ort_seconds(float_onnx, x)
                low_bit, _ = ort_seconds(pattern_onnx, x)
                folded, _ = ort_seconds(pattern_onnx, x, fold=True)
                ref = np.asarray(theirs["prob"], np.float32)
                if not np.max(np.abs(prob[:1] - ref)) <= 1e-4 * np.max(np.abs(ref)):
                    print(f"  {name}: ONNX Runtime's output differs from stock Caffe's")
                    ok = False
                rate = [batch / s for s in (theirs["seconds"], ours, low_bit, folded)]
                cells = [f"{rate[0]:>9.1f}"] + [f"{r:>{w}.1f} {r / rate[0]:>5.2f}x"
                                                for r, w in zip(rate[1:], (12, 13, 12))]
                print(f"{name:<13} {batch:>5} " + " ".join(cells))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
