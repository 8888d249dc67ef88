"""The engine: Caffe's semantics (nets, layers, fillers, SGD solver, snapshots, logs) on
PyTorch, reading and writing Caffe's own files. Command line: `python -m sepnets.caffe`.

    from sepnets.engine import Net
    net = Net.from_file("train_val.prototxt", phase="TEST", weights="x.caffemodel")
    net.forward()
    accuracy = net.output("accuracy")
"""
from sepnets.engine.net import Net  # noqa: F401
