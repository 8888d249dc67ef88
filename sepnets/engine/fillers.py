"""Caffe's weight fillers (include/caffe/filler.hpp): the same distributions and scale
rules; the random numbers themselves come from torch, not Boost's mt19937, so a filled net
matches Caffe's in distribution, not value by value."""
import math

import numpy as np
import torch

from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import UserError

VarianceNorm = caffe_pb2.FillerParameter


def _fans(shape):
    count = math.prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    return fan_in, fan_out


def _norm_size(param, shape):
    """Caffe's n for xavier/msra: fan_in, fan_out or their mean, as float32 like Dtype n."""
    fan_in, fan_out = _fans(shape)
    if param.variance_norm == VarianceNorm.AVERAGE:
        return np.float32(fan_in + fan_out) / np.float32(2)
    if param.variance_norm == VarianceNorm.FAN_OUT:
        return np.float32(fan_out)
    return np.float32(fan_in)


def _uniform(shape, low, high, generator):
    u = torch.rand(shape, generator=generator, dtype=torch.float32)
    return u.mul_(float(high) - float(low)).add_(float(low))


def _gaussian(param, shape, generator):
    data = torch.randn(shape, generator=generator, dtype=torch.float32)
    data.mul_(param.std).add_(param.mean)
    if param.sparse >= 0:
        # each output keeps about `sparse` nonzero inputs (Bernoulli mask, p = sparse / outputs)
        p = np.float32(param.sparse) / np.float32(shape[0])
        mask = torch.rand(shape, generator=generator) < float(p)
        data.mul_(mask)
    elif param.sparse < -1:
        raise ValueError("sparse must be >= -1")
    return data


def _positive_unitball(param, shape, generator):
    data = _uniform(shape, 0.0, 1.0, generator)
    rows = data.view(shape[0], -1)
    rows.div_(rows.sum(dim=1, keepdim=True))
    return data


def _xavier(param, shape, generator):
    scale = float(np.sqrt(np.float32(3) / _norm_size(param, shape)))
    return _uniform(shape, -scale, scale, generator)


def _msra(param, shape, generator):
    std = float(np.sqrt(np.float32(2) / _norm_size(param, shape)))
    return torch.randn(shape, generator=generator, dtype=torch.float32).mul_(std)


def _bilinear(param, shape, generator):
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ValueError("the bilinear filler needs a 4-axis blob with a square filter")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (k - 1) / (2.0 * f)
    axis = 1 - np.abs(np.arange(k, dtype=np.float64) / f - c)
    kernel = np.outer(axis, axis).astype(np.float32)
    return torch.from_numpy(np.broadcast_to(kernel, shape).copy())


def _constant(param, shape, generator):
    return torch.full(shape, param.value, dtype=torch.float32)


FILLERS = {
    "constant": _constant,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "uniform": lambda p, s, g: _uniform(s, p.min, p.max, g),
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(param, shape, generator=None, where="filler"):
    """A float32 CPU tensor of `shape` filled as Caffe's filler `param` would fill it."""
    shape = tuple(int(d) for d in shape)
    maker = FILLERS.get(param.type)
    if maker is None:
        raise UserError(f"{where}: unknown filler type '{param.type}' "
                        f"(Caffe's fillers: {', '.join(sorted(FILLERS))})")
    if param.type != "gaussian" and param.sparse != -1:
        raise UserError(f"{where}: sparse is only supported by the gaussian filler (as in Caffe)")
    if math.prod(shape) == 0:
        raise UserError(f"{where}: cannot fill an empty blob {shape}")
    try:
        return maker(param, shape, generator)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None


def constant(value):
    """A FillerParameter for a constant (Caffe's defaults, e.g. Scale's unit scale)."""
    return caffe_pb2.FillerParameter(type="constant", value=value)
