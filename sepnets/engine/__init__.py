"""The engine: Caffe's semantics on PyTorch, reading and writing Caffe's own files; the way to
run the paper's prototxts on today's hardware. Command line: `python -m sepnets.caffe`.

    commands    the caffe tool's train / test / time / device_query, with its flags (flags)
    solver      Caffe's Solver: the loop, tests, displays, snapshots, resume
    updates     each solver type's update rule (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)
    lr_policy   the seven learning-rate policies
    net         a Net from a NetParameter: upgrade, phase filter, shapes, layers in order,
                forward/backward, weights in and out (CopyTrainedLayersFrom, snapshots)
    layers/     one class per Caffe layer type, in a registry that refuses unknown fields:
                where an engine layer is defined
    fusion      BatchNorm+Scale fused and in-place ReLUs where results cannot change
    fillers     Caffe's seven fillers
    data        the input pipeline of Data and ImageData: worker processes, prefetch,
                staging in device memory; every record of a TEST database (database_batches)
    records     what they read: a database's records (rank-aware: Caffe's Skip), an
                image list's files (OpenCV); each source's decoder runs in the workers
    transform   Caffe's DataTransformer: crop, mirror, mean, scale, on the host or a GPU
    distributed data-parallel training with Caffe's multi-GPU semantics (torch.distributed)
    launch      -gpu 0,1,... / -gpu all: one process per device
    device      CPU/CUDA placement and memory layout
    memory      whether a net fits the device's free memory, before anything is allocated
    timing      `time`'s per-layer timing

    from sepnets.engine import Net
    net = Net.from_file("train_val.prototxt", phase="TEST", weights="x.caffemodel")
    net.forward()
    accuracy = net.output("accuracy")

May import sepnets.caffe and the top-level modules; nothing above it imports torch but here.

OpenMP's threads are asked not to spin while idle (OMP_WAIT_POLICY=PASSIVE, unless set, for
the import of torch that happens here, as on the command line; other programs this process
starts, stock Caffe among them, do not inherit it): the data worker processes need the cores
that spinning threads would hold (measured on 2 cores: a data-bound training 1.4x faster,
ResNet-20's compute-bound one no slower).
"""
import os
import sys

_PASSIVE = "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules
if _PASSIVE:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # libgomp reads it when torch loads it

from sepnets.engine.net import Net  # noqa: E402, F401

if _PASSIVE:
    del os.environ["OMP_WAIT_POLICY"]
