"""Where the engine computes: the one place that turns Caffe's `-gpu` choice into a torch
device and sets the CPU thread count. Every tensor the engine makes is created on, or moved
to, the device chosen here."""
import os

import torch

from sepnets.errors import UserError


def available_cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_all_cores(shares=1):
    """Caffe's OpenBLAS uses every core; so does the engine (torch may default to fewer).
    Several ranks on one machine (sepnets.engine.distributed) take `shares` equal parts."""
    torch.set_num_threads(max(1, available_cores() // shares))


def cuda_available():
    return torch.cuda.is_available()


def select(gpus):
    """The device for a list of GPU ids (Caffe's -gpu): [] is the CPU, [i] is CUDA device i."""
    use_all_cores()
    if not gpus:
        return torch.device("cpu")
    if len(gpus) > 1:
        raise UserError(f"-gpu {','.join(map(str, gpus))}: the engine trains on one device; "
                        "give one GPU id")
    if not cuda_available():
        raise UserError(f"-gpu {gpus[0]}: CUDA is not available to torch on this machine "
                        "(leave -gpu out to run on the CPU)")
    if not 0 <= gpus[0] < torch.cuda.device_count():
        raise UserError(f"-gpu {gpus[0]}: no such CUDA device "
                        f"({torch.cuda.device_count()} available)")
    torch.cuda.set_device(gpus[0])
    return torch.device("cuda", gpus[0])


def prefers_channels_last(device):
    """4-axis blobs in channels-last memory order: oneDNN's CPU convolutions and pooling run
    faster in it (the values, and Caffe's N, C, H, W indexing, are unchanged)."""
    return device.type == "cpu"


def name(device):
    """The device's name as Caffe's 'GPU 0: <name>' line shows it."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).name
    return "CPU"


def synchronize(device):
    """Waits for queued device work, so timings measure the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
