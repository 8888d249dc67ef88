"""Stock pycaffe's route to pattern binarization, timed: load the net with its weights, set
the named layers' weights to +/-offset, net.save; the best of REPEATS runs.

    quant_route.py NET WEIGHTS OUT OFFSET REPEATS LAYER...     prints {"seconds"} as JSON
"""
import json
import sys
import time

import caffe
import numpy as np

proto, weights, out, offset, repeats = sys.argv[1:6]
names = sys.argv[6:]
best = None
for _ in range(int(repeats)):
    start = time.perf_counter()
    net = caffe.Net(proto, caffe.TEST, weights=weights)
    for name in names:
        w = net.params[name][0].data
        w[...] = np.where(w > 0, float(offset), -float(offset))
    net.save(out)
    took = time.perf_counter() - start
    best = took if best is None else min(best, took)
    del net
print(json.dumps({"seconds": best}))
