"""How each parameter blob of a caffemodel is stored in the ONNX file.

- float32: the blob as an initializer (and values the graph derives from blobs, such as
  BatchNorm's mean and deviation, computed as Caffe computes them).
- pattern: a Convolution whose every output filter f holds only +a_f and -a_f (the model
  says so; no flag is trusted: quant_pattern.py's output, or any model that is binarized) is
  stored as an INT2 tensor of signs (+1/-1, four per byte) and a float32 scale per filter,
  joined by DequantizeLinear (per axis 0): (sign - 0) * a_f gives back exactly +-a_f. INT2 is
  the smallest integer type DequantizeLinear takes: ONNX has no 1-bit type, and INT2 enters
  at opset 25 (INT4 at 21); ONNX Runtime 1.32's CPU provider runs both per axis. So a sign
  costs 2 bits here, against netinfo's B convention of 1 bit.
- 8-bit (--bq): the weights of every Convolution and InnerProduct that is not a pattern, per
  output channel, with sepnets.pack's rule (one rule for both files): uint8 codes over the
  channel's range, value = minimum + code * step (pack.linear8). In ONNX: DequantizeLinear
  (codes, steps, per axis), then Add(minimums): one float32 product and one sum, as
  pack.decode computes it. Biases, BatchNorm and Scale blobs stay float32: a few values each,
  for which the 8-bit form with its two nodes would make the file larger, not smaller.

Each stored initializer is counted by kind (bytes of tensor data) for the size report.
"""
import numpy as np
from onnx import TensorProto, helper

from sepnets.errors import UserError
from sepnets.patterns import pack

FLOAT32, PATTERN, LINEAR8, CONSTANT = "float32", "pattern", "8-bit", "constants"
KINDS = (PATTERN, LINEAR8, FLOAT32, CONSTANT)
SIGN_DTYPE = helper.tensor_dtype_to_np_dtype(TensorProto.INT2)


def pattern_scales(weights):
    """The scale a_f of every output filter when each filter of a Convolution weight blob holds
    only +a_f and -a_f (pack.pattern_scales' rule) and more than one weight; else None."""
    if weights.ndim < 2 or weights[0].size < 2:
        return None
    try:
        return pack.pattern_scales("", weights)
    except UserError:
        return None


def linear8(array, axis):
    """pack.linear8 on each slice along `axis`: (minimums, steps, codes in the array's shape)."""
    moved = np.moveaxis(np.asarray(array, np.float32), axis, 0)
    parts = [pack.linear8(piece) for piece in moved]
    minimums = np.array([p[0] for p in parts], np.float32)
    steps = np.array([p[1] for p in parts], np.float32)
    codes = np.stack([p[2].reshape(moved.shape[1:]) for p in parts])
    return minimums, steps, np.moveaxis(codes, 0, axis)


def _along(values, axis, ndim):
    """Per-slice values shaped to broadcast along `axis` of an ndim-axis blob."""
    return values.reshape([-1 if i == axis else 1 for i in range(ndim)])


def rounded8(array, axis):
    """The float32 values the 8-bit storage gives back: minimum + code * step per slice along
    `axis` (what the DequantizeLinear + Add nodes compute, and pack.decode)."""
    lo, step, codes = linear8(array, axis)
    ndim = np.ndim(array)
    return (_along(lo, axis, ndim) + codes.astype(np.float32) * _along(step, axis, ndim)).astype(np.float32)


class Storage:
    """Stores parameter blobs into a Graph as float32, pattern or 8-bit values."""

    def __init__(self, graph, patterns, bq=False):
        self.graph = graph
        self.patterns = patterns          # {layer name: per-filter scales}
        self.bq = bq
        self.bytes = dict.fromkeys(KINDS, 0)

    def _constant(self, kind, hint, array):
        name = self.graph.constant(hint, array)
        self.bytes[kind] += len(self.graph.initializers[-1].raw_data)
        return name

    def value(self, layer, index, array, channel_axis=None, shape=None):
        """The ONNX value holding blob `index` of `layer`, reshaped to `shape` if given (for
        broadcasting). channel_axis: the output-channel axis of a weight blob (a Convolution's
        or InnerProduct's blob 0; 8-bit per channel along it with --bq)."""
        hint = f"{layer}/blob{index}"
        if index == 0 and layer in self.patterns:
            return self._pattern(hint, array, self.patterns[layer])
        if self.bq and channel_axis is not None:
            return self._linear8(hint, array, channel_axis)
        return self.derived(hint, array if shape is None else array.reshape(shape))

    def derived(self, hint, array):
        """A float32 value the graph computes from the blobs at export time."""
        return self._constant(FLOAT32, hint, np.asarray(array, np.float32))

    def _pattern(self, hint, weights, scales):
        signs = np.where(np.signbit(weights), -1, 1).astype(SIGN_DTYPE)
        inputs = [self._constant(PATTERN, f"{hint}/signs", signs),
                  self._constant(PATTERN, f"{hint}/scales", scales)]
        return self.graph.op("DequantizeLinear", inputs, hint, axis=0)

    def _linear8(self, hint, array, axis):
        lo, step, codes = linear8(array, axis)
        # a constant slice has step 0 and codes 0: any scale gives 0 for the product
        step = np.where(step == 0, np.float32(1), step).astype(np.float32)
        inputs = [self._constant(LINEAR8, f"{hint}/codes", codes),
                  self._constant(LINEAR8, f"{hint}/steps", step)]
        product = self.graph.op("DequantizeLinear", inputs, f"{hint}/scaled", axis=axis)
        minimum = self._constant(LINEAR8, f"{hint}/minimums", _along(lo, axis, codes.ndim))
        return self.graph.op("Add", [product, minimum], hint)
