"""Whether a net fits the machine, decided before any blob is allocated.

From the shapes Caffe's rules give (sepnets.caffe.shapes), a net needs about
    4 bytes x (its parameters x P + its top blobs x T)
with P = 3 in a training net (weights, gradients, the solver's history) and 1 otherwise, and
T = 2 in a training net (values kept for the backward pass, and their gradients) and 1
otherwise. Caffe itself keeps data and diff for every blob. A net needing more than the
memory free on its device (CPU: MemAvailable; CUDA: the device's free memory) is refused
with one line naming the size, instead of failing deep in an allocation (or, with a
net asking for terabytes, the machine swapping).
"""
import math
import os

import torch

from sepnets.errors import UserError

GB = 1e9


def required_bytes(inferred, training):
    """The estimate above for the LayerShapes of a net."""
    params = sum(math.prod(shape) for layer in inferred for shape in layer.param_shapes)
    tops = sum(math.prod(shape) for layer in inferred for shape in layer.top_shapes)
    return 4 * (params * (3 if training else 1) + tops * (2 if training else 1))


def available_bytes(device):
    """Free memory on `device`: the CUDA device's, or the machine's MemAvailable (None when
    it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_buffers(where, what, count, each_bytes):
    """UserError when `count` buffers of `each_bytes` in CPU memory (a data layer's prefetch
    batches: Caffe allocates all of them at set-up, base_data_layer.cpp:36-59) cannot fit the
    machine's free memory - before any is allocated."""
    need = count * each_bytes
    free = available_bytes(torch.device("cpu"))
    if free is not None and need > free:
        raise UserError(f"{where}: {what}: {count:,} batches of {each_bytes:,} bytes need about "
                        f"{need / GB:,.1f} GB; {free / GB:,.1f} GB CPU memory available")


def check(inferred, device, training, source):
    """UserError when the net cannot fit the free memory of `device`."""
    need = required_bytes(inferred, training)
    free = available_bytes(device)
    if free is not None and need > free:
        where = "CPU memory" if device.type != "cuda" else f"free on {device}"
        raise UserError(f"{source}: the net needs about {need / GB:,.1f} GB for its blobs "
                        f"(parameters and outputs, float32{', training' if training else ''}); "
                        f"{free / GB:,.1f} GB {where} available")
    return need
