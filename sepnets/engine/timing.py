"""`caffe time`: forward and backward time of each layer, as Caffe measures it (each layer's
Forward, then each layer's Backward in reverse order).

For per-layer backward times each layer gets its own autograd graph: its bottoms are fresh
leaves (needing a gradient where the blob's maker needs one, as Caffe's need_backward), and
the gradients arriving at them are handed to the layers that made those blobs.
"""
import time

import torch

from sepnets.engine import device as devices


class _Clock:
    def __init__(self, device):
        self.device = device

    def now(self):
        devices.synchronize(self.device)
        return time.perf_counter()


def _forward(net, clock, times):
    """One forward pass, layer by layer. Returns [(step, leaves, sources, tops)]."""
    blobs = {}
    record = []
    for i, step in enumerate(net.steps):
        sources = [blobs[name] for name in step.bottoms]
        leaves = [s.detach().requires_grad_(s.requires_grad and keep)
                  for s, keep in zip(sources, step.propagate)]
        start = clock.now()
        tops = step.layer.forward(leaves)
        times[i] += clock.now() - start
        for name, top in zip(step.tops, tops):
            blobs[name] = top
        record.append((step, leaves, sources, tops))
    return record


def _backward(record, clock, times):
    grads = {}
    for i in range(len(record) - 1, -1, -1):
        step, leaves, sources, tops = record[i]
        tensors, top_grads = [], []
        for top, weight in zip(tops, step.loss_weights):
            if not top.requires_grad:
                continue
            grad = grads.pop(id(top), None)
            if weight:
                extra = torch.full_like(top, weight)
                grad = extra if grad is None else grad + extra
            if grad is not None:
                tensors.append(top)
                top_grads.append(grad)
        start = clock.now()
        if tensors:
            torch.autograd.backward(tensors, top_grads)
        times[i] += clock.now() - start
        for leaf, source in zip(leaves, sources):
            if leaf.grad is not None:
                key = id(source)
                grads[key] = leaf.grad if key not in grads else grads[key] + leaf.grad


def benchmark(net, iterations, on_iteration=None):
    """Runs `iterations` forward/backward passes. Returns (forward seconds per layer,
    backward seconds per layer, total forward seconds, total backward seconds, wall
    seconds), all summed over the iterations."""
    clock = _Clock(net.device)
    layers = len(net.steps)
    forward_times, backward_times = [0.0] * layers, [0.0] * layers
    forward_total = backward_total = 0.0
    wall_start = clock.now()
    for j in range(iterations):
        iteration_start = clock.now()
        record = _forward(net, clock, forward_times)
        forward_end = clock.now()
        _backward(record, clock, backward_times)
        end = clock.now()
        forward_total += forward_end - iteration_start
        backward_total += end - forward_end
        if on_iteration:
            on_iteration(j, end - iteration_start)
        net.clear_param_diffs()
    return forward_times, backward_times, forward_total, backward_total, clock.now() - wall_start
