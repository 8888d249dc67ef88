"""Stock pycaffe's TEST forward timed for bench/bench_onnx.py.

    deploy_timing.py NET|WEIGHTS|REPEATS|INPUTS ...

For each argument: the net with its filler weights, BatchNorm at mean 0, variance 1, factor 1
(the fillers leave the factor 0: x / sqrt(eps), exploding), saved to WEIGHTS; then the best of
REPEATS forward passes after a warm-up, at batch 1 and 32 of the INPUTS .npy images. Prints
JSON {NET: {batch: {"seconds", "prob": the first image's output}}}.
"""
import json
import sys
import time

import caffe
import numpy as np


def best_forward(net, repeats):
    net.forward()
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        net.forward()
        took = time.perf_counter() - start
        best = took if best is None else min(best, took)
    return best


def main():
    out = {}
    for spec in sys.argv[1:]:
        proto, weights, repeats, inputs = spec.split("|")
        net = caffe.Net(proto, caffe.TEST)
        for layer in net.layers:
            if layer.type == "BatchNorm":
                layer.blobs[0].data[...] = 0
                layer.blobs[1].data[...] = 1
                layer.blobs[2].data[...] = 1
        net.save(weights)
        entry = out[proto] = {}
        for batch in (1, 32):
            x = np.load(inputs)[:batch]
            net.blobs["data"].reshape(*x.shape)
            net.reshape()
            net.blobs["data"].data[...] = x
            entry[batch] = {"seconds": best_forward(net, int(repeats)),
                            "prob": net.blobs["prob"].data[:1].tolist()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
