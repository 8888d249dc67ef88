"""Stock pycaffe: every parameter blob of a net (with weights, if given) into an .npz.

    dump_params.py NET [WEIGHTS] OUT.npz     keys "LAYER__i"
"""
import sys

import caffe
import numpy as np

net = caffe.Net(sys.argv[1], caffe.TEST, weights=sys.argv[2]) if len(sys.argv) > 3 \
    else caffe.Net(sys.argv[1], caffe.TEST)
np.savez(sys.argv[-1], **{"%s__%d" % (k, i): b.data for k, v in net.params.items()
                          for i, b in enumerate(v)})
