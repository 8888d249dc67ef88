"""Element-wise layers: ReLU (with negative_slope), Sigmoid, TanH, Dropout, AbsVal, Power,
Exp, Log, BNLL, Threshold, Clip, Swish, ELU and PReLU (its slopes learned per channel or
shared)."""
import numpy as np
import torch
import torch.nn.functional as F

from sepnets.engine import fillers
from sepnets.engine.layers.base import Layer, register

f32 = np.float32


class Neuron(Layer):
    """Caffe's NeuronLayer: one bottom, one top of its shape, value by value."""


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


@register
class AbsVal(Neuron):
    """|x|; gradient sign(x) (0 at 0, as Caffe's caffe_cpu_sign)."""
    TYPE = "AbsVal"

    def setup(self, shapes):
        self.check_in_place()

    def forward(self, bottoms):
        return [torch.abs(bottoms[0])]


@register
class Power(Neuron):
    """(shift + scale * x) ^ power; with power or scale 0 the constant shift ^ power (1 when
    power is 0), whose gradient Caffe sets to 0."""
    TYPE = "Power"
    PARAMS = ("power_param",)
    FIELDS = {"power_param": {"power", "scale", "shift"}}

    def setup(self, shapes):
        p = self.param.power_param
        self.power, self.scale, self.shift = f32(p.power), f32(p.scale), f32(p.shift)
        self.constant = None
        if self.power * self.scale == 0:
            self.constant = float(f32(1) if self.power == 0 else np.power(self.shift, self.power))

    def forward(self, bottoms):
        x = bottoms[0]
        if self.constant is not None:
            return [torch.full_like(x, self.constant).detach()]
        if self.scale != 1:
            x = x * float(self.scale)
        if self.shift != 0:
            x = x + float(self.shift)
        return [x if self.power == 1 else x.pow(float(self.power))]


def _log_base(layer, base):
    """Exp's and Log's log(base), base -1 meaning e (log_base exactly 1), with Caffe's checks."""
    if base == -1:
        return f32(1)
    if not base > 0:
        layer.fail("base must be strictly positive.")
    with np.errstate(all="ignore"):
        log_base = np.log(base)
    if not np.isfinite(log_base):
        layer.fail(f"log(base) = log({base}) = {log_base} is not finite")
    return log_base


@register
class Exp(Neuron):
    """base ^ (shift + scale * x), computed as Caffe does: outer * exp(inner * x) with
    inner = log(base) * scale and outer = base ^ shift."""
    TYPE = "Exp"
    PARAMS = ("exp_param",)
    FIELDS = {"exp_param": {"base", "scale", "shift"}}

    def setup(self, shapes):
        p = self.param.exp_param
        base, scale, shift = f32(p.base), f32(p.scale), f32(p.shift)
        self.inner = float(_log_base(self, base) * scale)
        self.outer = float(f32(1) if shift == 0 else np.exp(shift) if base == -1
                           else np.power(base, shift))

    def forward(self, bottoms):
        x = bottoms[0]
        y = torch.exp(x if self.inner == 1 else x * self.inner)
        return [y if self.outer == 1 else y * self.outer]


@register
class Log(Neuron):
    """log_base(shift + scale * x), computed as log(shift + scale * x) / log(base)."""
    TYPE = "Log"
    PARAMS = ("log_param",)
    FIELDS = {"log_param": {"base", "scale", "shift"}}

    def setup(self, shapes):
        p = self.param.log_param
        with np.errstate(divide="ignore"):
            self.base_scale = f32(1) / _log_base(self, f32(p.base))
        if not np.isfinite(self.base_scale):
            self.fail(f"1/log(base) = 1/log({p.base}) is not finite")
        self.scale, self.shift = float(f32(p.scale)), float(f32(p.shift))

    def forward(self, bottoms):
        x = bottoms[0]
        if self.scale != 1:
            x = x * self.scale
        if self.shift != 0:
            x = x + self.shift
        y = torch.log(x)
        return [y if self.base_scale == 1 else y * float(self.base_scale)]


@register
class BNLL(Neuron):
    """log(1 + exp(x)) (binomial normal log likelihood); gradient the sigmoid."""
    TYPE = "BNLL"

    def forward(self, bottoms):
        return [F.softplus(bottoms[0])]


@register
class Threshold(Neuron):
    """1 where x > threshold, else 0. Caffe has no Backward for it."""
    TYPE = "Threshold"
    PARAMS = ("threshold_param",)
    FIELDS = {"threshold_param": {"threshold"}}
    FORCE_BACKWARD_FAILS = "ThresholdLayer's Backward is not implemented"

    def setup(self, shapes):
        self.threshold = float(f32(self.param.threshold_param.threshold))

    def forward(self, bottoms):
        return [(bottoms[0] > self.threshold).to(torch.float32)]


@register
class Clip(Neuron):
    """max(min, min(x, max)); the gradient passes where min <= x <= max."""
    TYPE = "Clip"
    PARAMS = ("clip_param",)
    FIELDS = {"clip_param": {"min", "max"}}

    def setup(self, shapes):
        p = self.param.clip_param
        self.low, self.high = float(f32(p.min)), float(f32(p.max))

    def forward(self, bottoms):
        x = bottoms[0]
        if self.low > self.high:  # Caffe's formula gives min everywhere, and no gradient
            return [torch.full_like(x, self.low).detach()]
        return [torch.clamp(x, self.low, self.high)]


@register
class Swish(Neuron):
    """x * sigmoid(beta * x)."""
    TYPE = "Swish"
    PARAMS = ("swish_param",)
    FIELDS = {"swish_param": {"beta"}}

    def setup(self, shapes):
        self.beta = float(f32(self.param.swish_param.beta))

    def forward(self, bottoms):
        x = bottoms[0]
        return [x * torch.sigmoid(x * self.beta)]


@register
class ELU(Neuron):
    """max(x, 0) + alpha * (exp(min(x, 0)) - 1)."""
    TYPE = "ELU"
    PARAMS = ("elu_param",)
    FIELDS = {"elu_param": {"alpha"}}

    def setup(self, shapes):
        self.alpha = float(f32(self.param.elu_param.alpha))

    def forward(self, bottoms):
        return [F.elu(bottoms[0], self.alpha)]


@register
class PReLU(Neuron):
    """max(x, 0) + a_c * min(x, 0) with a learned slope per channel (axis 1), or one shared
    (a 0-axis blob); the slopes start at filler, default constant 0.25."""
    TYPE = "PReLU"
    PARAMS = ("prelu_param",)
    FIELDS = {"prelu_param": {"filler", "channel_shared"}}

    def setup(self, shapes):
        p = self.param.prelu_param
        filler = p.filler if p.HasField("filler") else fillers.constant(0.25)
        shape = shapes.param_shapes[0]
        self.blobs.append(self.make_blob(filler, shape or (1,), "filler").reshape(shape).clone())

    def forward(self, bottoms):
        return [F.prelu(bottoms[0], self.blob(0).reshape(-1))]
