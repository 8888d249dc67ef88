"""Caffemodels for tests and benchmarks, built by the toolkit alone."""
import os

from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from sepnets.nets import analysis


def model_for(net_or_path, fill, phase="TEST"):
    """A caffemodel (files.Model) for a net: its layers, and fill(shape) for every parameter
    blob the net has in `phase` (random weights, zeros, ...)."""
    net = files.read_net(net_or_path) if isinstance(net_or_path, (str, os.PathLike)) else net_or_path
    model = files.Model(caffe_pb2.NetParameter(name=net.name))
    model.net.layer.extend(net.layer)
    for layer in analysis.analyze(net, phase).layers:
        if layer.param_shapes:
            model.blobs[layer.name] = [fill(shape) for shape in layer.param_shapes]
    return model
