"""`caffe time` on the engine.

The Average Forward pass / Backward pass / Forward-Backward lines (and each iteration's
forward-backward time) time what training runs: Net.forward with the autograd graph, then
Net.backward, over the net's fused steps (BatchNorm+Scale fused, in-place ReLUs, channels-last
on the CPU), with the device synchronized around each timed part on CUDA.

The per-layer lines come from a separate, instrumented pass over the unfused layers
(Net.layer_steps), timed as Caffe times them (each layer's Forward, then each layer's
Backward in reverse order): for per-layer backward times each layer gets its own autograd
graph, its bottoms fresh leaves (needing a gradient where the blob's maker needs one, as
Caffe's need_backward), and the gradients arriving at them are handed to the layers that made
those blobs. That pass is slower than training (no fusions, one graph per layer), which is why
its sums are not the averages.
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


def training_passes(net, iterations, on_iteration=None):
    """`iterations` forward/backward passes as training runs them. Returns (forward seconds,
    backward seconds, wall seconds), summed over the iterations; on_iteration(j, seconds)
    gets each iteration's forward-backward time."""
    clock = _Clock(net.device)
    forward_total = backward_total = wall = 0.0
    for j in range(iterations):
        start = clock.now()
        loss = net.forward(grad=True)
        middle = clock.now()
        net.backward(loss)
        end = clock.now()
        forward_total += middle - start
        backward_total += end - middle
        wall += end - start
        if on_iteration:
            on_iteration(j, end - start)
        net.clear_param_diffs()
    return forward_total, backward_total, wall


def _forward(steps, clock, times):
    """One forward pass, layer by layer. Returns [(step, leaves, sources, tops)]."""
    blobs = {}
    record = []
    for i, step in enumerate(steps):
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


def per_layer(net, iterations):
    """The instrumented pass: `iterations` forward/backward passes layer by layer over
    net.layer_steps. Returns (forward seconds per layer, backward seconds per layer), summed
    over the iterations."""
    clock = _Clock(net.device)
    steps = net.layer_steps
    forward_times, backward_times = [0.0] * len(steps), [0.0] * len(steps)
    with torch.enable_grad():
        for _ in range(iterations):
            _backward(_forward(steps, clock, forward_times), clock, backward_times)
            net.clear_param_diffs()
    return forward_times, backward_times
