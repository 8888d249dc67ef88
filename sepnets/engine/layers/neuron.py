"""Element-wise layers: ReLU (with negative_slope), Sigmoid, TanH, Dropout."""
import numpy as np
import torch
import torch.nn.functional as F

from sepnets.engine.layers.base import Layer, register


class Neuron(Layer):
    NUM_BOTTOMS = 1
    NUM_TOPS = 1


@register
class ReLU(Neuron):
    TYPE = "ReLU"
    PARAMS = ("relu_param",)
    FIELDS = {"relu_param": {"negative_slope", "engine"}}

    def setup(self, shapes):
        self.slope = float(np.float32(self.param.relu_param.negative_slope))

    def forward(self, bottoms):
        x = bottoms[0]
        if self.slope == 0:
            return [F.relu(x)]
        # Caffe: max(x, 0) + slope * min(x, 0); its gradient is 1 for x > 0, slope otherwise
        return [F.leaky_relu(x, self.slope)]


@register
class Sigmoid(Neuron):
    TYPE = "Sigmoid"
    PARAMS = ("sigmoid_param",)
    FIELDS = {"sigmoid_param": {"engine"}}

    def forward(self, bottoms):
        return [torch.sigmoid(bottoms[0])]


@register
class TanH(Neuron):
    TYPE = "TanH"
    PARAMS = ("tanh_param",)
    FIELDS = {"tanh_param": {"engine"}}

    def forward(self, bottoms):
        return [torch.tanh(bottoms[0])]


@register
class Dropout(Neuron):
    """TRAIN: keeps each value with probability 1 - dropout_ratio and scales kept values by
    1 / (1 - dropout_ratio) (Caffe's inverted dropout); TEST: passes values through."""
    TYPE = "Dropout"
    PARAMS = ("dropout_param",)
    FIELDS = {"dropout_param": {"dropout_ratio"}}

    def setup(self, shapes):
        ratio = np.float32(self.param.dropout_param.dropout_ratio)
        if not 0 <= ratio < 1:
            self.fail(f"dropout_ratio must be in [0, 1), not {ratio}")
        self.ratio = float(ratio)
        self.scale = float(np.float32(1) / (np.float32(1) - ratio))

    def forward(self, bottoms):
        x = bottoms[0]
        if not self.train:
            return [x]
        device = x.device
        generator = self.ctx.generator if device.type == "cpu" else None
        keep = torch.rand(x.shape, generator=generator, device=device) >= self.ratio
        return [x * keep * self.scale]
