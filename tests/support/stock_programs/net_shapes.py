"""Stock pycaffe: for each "path|PHASE" argument, every blob's and every parameter's shape;
for "path|PHASE|forward", also a forward pass on random data with BatchNorm statistics set to
mean 0, variance 1 (untrained nets have none), reporting the output blobs. Prints one JSON
object keyed by the arguments."""
import json
import sys

import caffe
import numpy as np

np.random.seed(0)
out = {}
for spec in sys.argv[1:]:
    path, phase, *forward = spec.split("|")
    net = caffe.Net(path, getattr(caffe, phase))
    entry = {"blobs": {k: list(v.data.shape) for k, v in net.blobs.items()},
             "params": {k: [list(b.data.shape) for b in v] for k, v in net.params.items()}}
    if forward:
        for layer in net.layers:
            if layer.type == "BatchNorm":
                layer.blobs[0].data[...] = 0
                layer.blobs[1].data[...] = 1
                layer.blobs[2].data[...] = 1
        for name in net.inputs:
            net.blobs[name].data[...] = np.random.randn(*net.blobs[name].data.shape)
        result = net.forward()
        entry["outputs"] = {k: v.tolist() for k, v in result.items()}
    out[spec] = entry
print(json.dumps(out))
