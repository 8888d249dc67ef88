"""Speed-ups that keep Caffe's results, applied to a built net's steps:

- a BatchNorm whose output only the Scale after it reads runs with that Scale as one fused
  normalize-scale-shift (torch's batch_norm with weight and bias: one pass over the data
  instead of two, forward and backward);
- an in-place ReLU whose input nobody else reads overwrites that input instead of making a
  new buffer, where the operation that made the input keeps no copy of its output for its
  gradient.

Results differ from the unfused layers only in float rounding (the conformance tests run
fused nets); both layers keep their own blobs, so snapshots, sharing and the solver still
see Caffe's layers. The `time` command's averages time these fused steps, as training runs
them; its per-layer rows come from a separate pass over the unfused layers (Net.layer_steps).
"""
from collections import Counter

import torch.nn.functional as F

# Layers whose gradient does not need their output, which is always a new tensor.
KEEPS_NO_OUTPUT = {"Convolution", "InnerProduct", "BatchNorm", "Scale", "Bias", "Eltwise",
                   "Pooling"}


class BatchNormScale:
    TYPE = "BatchNormScale"
    MAKES_DATA = False

    def __init__(self, norm, scale):
        self.norm, self.scale = norm, scale
        self.name = f"{norm.name}+{scale.name}"

    def forward(self, bottoms):
        beta = self.scale.blob(1) if self.scale.has_bias else None
        return [self.norm.normalize(bottoms[0], self.scale.blob(0), beta)]


class ReLUInPlace:
    TYPE = "ReLU"
    MAKES_DATA = False

    def __init__(self, relu):
        self.name = relu.name

    def forward(self, bottoms):
        return [F.relu_(bottoms[0])]


def _per_channel_scale(layer, channels):
    return (layer.TYPE == "Scale" and len(layer.param.bottom) == 1
            and layer.blob_shapes[0] == (channels,) and layer.view[:2] == (1, channels))


def _readers(steps):
    """Per step, the version (producer step, top index) of each bottom; readers per version."""
    latest, readers, versions = {}, Counter(), []
    for i, step in enumerate(steps):
        ids = [latest.get(name) for name in step.bottoms]
        versions.append(ids)
        readers.update(v for v in ids if v is not None)
        latest.update({name: (i, j) for j, name in enumerate(step.tops)})
    return versions, readers


def optimize(steps, make_step):
    """The steps with fusable BatchNorm+Scale pairs fused and safe ReLUs made in-place.
    make_step(layer, step_to_copy, tops=None, loss_weights=None) builds a replacement step."""
    versions, readers = _readers(steps)
    out, i = [], 0
    while i < len(steps):
        step, layer = steps[i], steps[i].layer
        after = steps[i + 1] if i + 1 < len(steps) else None
        if (layer.TYPE == "BatchNorm" and after is not None and not any(step.loss_weights)
                and len(layer.bottom_shapes[0]) >= 2 and layer.per_channel > 1
                and _per_channel_scale(after.layer, layer.bottom_shapes[0][1])
                and versions[i + 1] == [(i, 0)] and readers[(i, 0)] == 1
                and all(after.propagate)):
            out.append(make_step(BatchNormScale(layer, after.layer), step, after.tops,
                                 after.loss_weights))
            i += 2
            continue
        source = versions[i][0] if layer.TYPE == "ReLU" else None
        if (source is not None and layer.slope == 0 and step.bottoms == step.tops
                and readers[source] == 1 and not any(step.loss_weights)
                and steps[source[0]].layer.TYPE in KEEPS_NO_OUTPUT):
            out.append(make_step(ReLUInPlace(layer), step))
        else:
            out.append(step)
        i += 1
    return out
