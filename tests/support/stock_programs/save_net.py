"""Stock pycaffe: a net's filler weights, with bn1's statistics set, saved by net.save.

    save_net.py NET OUT.caffemodel PARAMS.npz     prints the (layer name, type) list
"""
import sys

import caffe
import numpy as np

net = caffe.Net(sys.argv[1], caffe.TEST)
net.params['bn1'][0].data[...] = np.arange(8)
net.params['bn1'][2].data[...] = 7
net.save(sys.argv[2])
np.savez(sys.argv[3], **{"%s__%d" % (k, i): b.data for k, v in net.params.items()
                         for i, b in enumerate(v)})
print(repr([(name, net.layers[i].type) for i, name in enumerate(net._layer_names)]))
