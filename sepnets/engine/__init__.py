"""The engine: Caffe's semantics on PyTorch, reading and writing Caffe's own files; the way to
run the paper's prototxts on today's hardware. Command line: `python -m sepnets.caffe`.

    commands    the caffe tool's train / test / time / device_query, with its flags (flags)
    solver      Caffe's Solver and SGD update: the loop, tests, displays, snapshots, resume
    lr_policy   the seven learning-rate policies
    net         a Net from a NetParameter: upgrade, phase filter, shapes, layers in order,
                forward/backward, weights in and out (CopyTrainedLayersFrom, snapshots)
    layers/     one class per Caffe layer type, in a registry that refuses unknown fields:
                where an engine layer is defined
    fusion      BatchNorm+Scale fused and in-place ReLUs where results cannot change
    fillers     Caffe's seven fillers
    data        the Data layer's reading and transforming (a prefetch thread)
    device      CPU/CUDA placement and memory layout
    memory      whether a net fits the device's free memory, before anything is allocated
    timing      `time`'s per-layer timing

    from sepnets.engine import Net
    net = Net.from_file("train_val.prototxt", phase="TEST", weights="x.caffemodel")
    net.forward()
    accuracy = net.output("accuracy")

May import sepnets.caffe and the top-level modules; nothing above it imports torch but here.
"""
from sepnets.engine.net import Net  # noqa: F401
