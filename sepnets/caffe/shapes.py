"""Shape inference for Caffe nets, following each layer's LayerSetUp/Reshape in Caffe 1.0.

infer(net) walks the (already phase-filtered) layers in order and returns, per layer, the
shapes of its tops and of its parameter blobs and its multiply-accumulates per forward pass.
Blob shapes are tuples; Caffe's loss and accuracy outputs are 0-axis (scalar) blobs: ().
"""
import math
from dataclasses import dataclass, field

from sepnets.caffe.proto import CAFFE_LAYER_TYPES
from sepnets.errors import UserError


class ShapeError(UserError):
    """A net whose shapes do not work out (Caffe would stop with a CHECK failure)."""


@dataclass
class LayerShapes:
    name: str
    type: str
    bottoms: list
    tops: list
    top_shapes: list
    param_shapes: list = field(default_factory=list)
    macs: int = 0
    kernel: tuple = None  # (kh, kw) for Convolution/Deconvolution

    @property
    def param_count(self):
        return sum(math.prod(s) for s in self.param_shapes)


def _fail(layer, problem):
    raise ShapeError(f"layer '{layer.name}' ({layer.type}): {problem}")


def canonical_axis(layer, axis, ndim):
    if not -ndim <= axis < max(ndim, 1):
        _fail(layer, f"axis {axis} out of range for a {ndim}-axis blob")
    return axis % ndim if ndim else 0


def _spatial(layer, what, values, hw, default, n):
    """Caffe's kernel/pad/stride/dilation rule (base_conv_layer.cpp:34-104): once, once per
    spatial axis, or *_h/*_w (hw: their values when either is set, the other then 0 as
    caffe.proto's default)."""
    values = list(values)
    if hw is not None:
        if n != 2:
            _fail(layer, f"{what}_h/{what}_w can only be used for 2-D convolution")
        if values:
            _fail(layer, f"either {what} or {what}_h/{what}_w should be specified; not both")
        return list(hw)
    if not values:
        return [default] * n
    if len(values) not in (1, n):
        _fail(layer, f"give {what} once or once per spatial axis ({n}), not {len(values)} times")
    return values * n if len(values) == 1 else values


def _hw(p, name):
    h, w = f"{name}_h", f"{name}_w"
    return (getattr(p, h), getattr(p, w)) if p.HasField(h) or p.HasField(w) else None


def conv_kernel(layer, n_spatial=None):
    """A convolution's kernel size, one entry per spatial axis. n_spatial None: 2, or as many
    axes as kernel_size lists (a layer read without its input's shape, e.g. from a caffemodel)."""
    p = layer.convolution_param
    if n_spatial is None:
        n_spatial = len(p.kernel_size) if len(p.kernel_size) > 1 else 2
    kernel = _spatial(layer, "kernel_size", p.kernel_size, _hw(p, "kernel"), None, n_spatial)
    if None in kernel or min(kernel) <= 0:
        _fail(layer, "kernel size must be given and nonzero")
    return kernel


def conv_geometry(layer, n_spatial):
    """(kernel, stride, pad, dilation) of a convolution, one entry per spatial axis each."""
    p = layer.convolution_param
    kernel = conv_kernel(layer, n_spatial)
    stride = _spatial(layer, "stride", p.stride, _hw(p, "stride"), 1, n_spatial)
    pad = _spatial(layer, "pad", p.pad, _hw(p, "pad"), 0, n_spatial)
    dilation = _spatial(layer, "dilation", p.dilation, None, 1, n_spatial)
    return kernel, stride, pad, dilation


def _convolution(layer, bottoms, deconv=False):
    p = layer.convolution_param
    shape = bottoms[0]
    axis = canonical_axis(layer, p.axis, len(shape))
    n_spatial = len(shape) - axis - 1
    if n_spatial < 1:
        _fail(layer, f"input {shape} has no spatial axes after the channel axis")
    kernel, stride, pad, dilation = conv_geometry(layer, n_spatial)
    if min(stride) <= 0:
        _fail(layer, "stride dimensions must be nonzero")
    channels = shape[axis]
    group = p.group
    if p.num_output <= 0:
        _fail(layer, "num_output must be positive")
    if group <= 0:
        _fail(layer, "group must be positive")
    if channels % group or p.num_output % group:
        _fail(layer, f"group {group} must divide input channels {channels} and "
                     f"num_output {p.num_output}")
    out_spatial = []
    for size, k, s, pd, d in zip(shape[axis + 1:], kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        out = s * (size - 1) + extent - 2 * pd if deconv else (size + 2 * pd - extent) // s + 1
        if out <= 0:
            _fail(layer, f"output size {out} <= 0 (input {size}, kernel {k}, stride {s}, pad {pd})")
        out_spatial.append(out)
    if deconv:
        weight = (channels, p.num_output // group, *kernel)
    else:
        weight = (p.num_output, channels // group, *kernel)
    params = [weight] + ([(p.num_output,)] if p.bias_term else [])
    outer = math.prod(shape[:axis])
    top = (*shape[:axis], p.num_output, *out_spatial)
    if deconv:  # every input pixel scatters into a kernel window of every output channel
        macs = outer * math.prod(shape[axis + 1:]) * channels * (p.num_output // group) * math.prod(kernel)
    else:
        macs = outer * math.prod(out_spatial) * p.num_output * (channels // group) * math.prod(kernel)
    return [top] * len(layer.top), params, macs, tuple(kernel)


def _pooling(layer, bottoms):
    p = layer.pooling_param
    shape = bottoms[0]
    if len(shape) != 4:
        _fail(layer, f"input must have 4 axes (num, channels, height, width), not {shape}")
    n, c, h, w = shape
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h"):
            _fail(layer, "with global_pooling: true the filter size cannot be specified")
        kh, kw = h, w
    elif p.HasField("kernel_size"):
        kh = kw = p.kernel_size
    elif p.HasField("kernel_h") and p.HasField("kernel_w"):
        kh, kw = p.kernel_h, p.kernel_w
    else:
        _fail(layer, "kernel_size (or kernel_h and kernel_w) is required")
    ph, pw = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    sh, sw = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    if p.global_pooling and (ph or pw or sh != 1 or sw != 1):
        _fail(layer, "with global_pooling: true only pad = 0 and stride = 1")
    # pooling_layer.cpp:50-75; a zero stride Caffe divides by
    if kh <= 0 or kw <= 0:
        _fail(layer, "filter dimensions cannot be zero")
    if sh <= 0 or sw <= 0:
        _fail(layer, "stride dimensions must be nonzero")
    if (ph or pw) and (ph >= kh or pw >= kw):
        _fail(layer, f"pad {ph}x{pw} must be smaller than the kernel {kh}x{kw}")
    rnd = math.floor if p.round_mode == p.FLOOR else math.ceil
    out_h = int(rnd((h + 2 * ph - kh) / sh)) + 1
    out_w = int(rnd((w + 2 * pw - kw) / sw)) + 1
    if ph or pw:
        # Caffe: the last pooling window must start inside the image, not in the padding
        if (out_h - 1) * sh >= h + ph:
            out_h -= 1
        if (out_w - 1) * sw >= w + pw:
            out_w -= 1
    if out_h <= 0 or out_w <= 0:
        _fail(layer, f"output size {out_h}x{out_w} <= 0")
    return [(n, c, out_h, out_w)] * len(layer.top), [], 0


def _inner_product(layer, bottoms):
    p = layer.inner_product_param
    shape = bottoms[0]
    axis = canonical_axis(layer, p.axis, len(shape))
    k = math.prod(shape[axis:])
    weight = (k, p.num_output) if p.transpose else (p.num_output, k)
    params = [weight] + ([(p.num_output,)] if p.bias_term else [])
    return [(*shape[:axis], p.num_output)], params, math.prod(shape[:axis]) * k * p.num_output


def _batch_norm(layer, bottoms):
    shape = bottoms[0]
    channels = shape[1] if len(shape) > 1 else 1
    return [shape], [(channels,), (channels,), (1,)], 0


def _scale_like(layer, bottoms, p, has_bias):
    shape = bottoms[0]
    if len(bottoms) > 1:
        param_shape = bottoms[1]
        params = []
        axis = canonical_axis(layer, p.axis, len(shape)) if param_shape else 0
    else:
        axis = canonical_axis(layer, p.axis, len(shape)) if shape else 0
        num_axes = p.num_axes
        if num_axes < -1:
            _fail(layer, "num_axes must be non-negative, or -1 for all remaining axes")
        end = len(shape) if num_axes == -1 else axis + num_axes
        if end > len(shape):
            _fail(layer, f"axis {axis} + num_axes {num_axes} exceeds the {len(shape)} input axes")
        param_shape = tuple(shape[axis:end])
        params = [param_shape]
    if tuple(shape[axis:axis + len(param_shape)]) != tuple(param_shape):
        _fail(layer, f"scale/bias shape {param_shape} does not match input {shape} at axis {axis}")
    if has_bias:
        params.append(param_shape)
    return [shape], params, 0


def _scale(layer, bottoms):
    p = layer.scale_param
    return _scale_like(layer, bottoms, p, p.bias_term)


def _bias(layer, bottoms):
    return _scale_like(layer, bottoms, layer.bias_param, False)


def _same(layer, bottoms):
    return [bottoms[0]] * len(layer.top), [], 0


def _prelu(layer, bottoms):
    shape = bottoms[0]
    channels = shape[1] if len(shape) > 1 else 1
    return [shape], [(1,) if layer.prelu_param.channel_shared else (channels,)], 0


def _eltwise(layer, bottoms):
    for s in bottoms[1:]:
        if s != bottoms[0]:
            _fail(layer, f"all inputs must have the same shape: {bottoms[0]} vs {s}")
    return [bottoms[0]], [], 0


def _concat(layer, bottoms):
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") else p.axis
    first = bottoms[0]
    axis = canonical_axis(layer, axis, len(first))
    total = 0
    for s in bottoms:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis):
            _fail(layer, f"inputs must match outside axis {axis}: {first} vs {s}")
        total += s[axis]
    return [(*first[:axis], total, *first[axis + 1:])], [], 0


def _slice(layer, bottoms):
    p = layer.slice_param
    shape = bottoms[0]
    axis = canonical_axis(layer, p.slice_dim if p.HasField("slice_dim") else p.axis, len(shape))
    n = len(layer.top)
    points = list(p.slice_point)
    if points:
        if len(points) != n - 1:
            _fail(layer, f"{len(points)} slice points for {n} tops")
        bounds = [0] + points + [shape[axis]]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    else:
        if shape[axis] % n:
            _fail(layer, f"axis size {shape[axis]} is not divisible by {n} tops")
        sizes = [shape[axis] // n] * n
    return [(*shape[:axis], s, *shape[axis + 1:]) for s in sizes], [], 0


def _loss(layer, bottoms):
    tops = [()]
    if len(layer.top) > 1:  # SoftmaxWithLoss's optional second top: the probabilities
        tops.append(bottoms[0])
    return tops, [], 0


def _accuracy(layer, bottoms):
    p = layer.accuracy_param
    tops = [()]
    if len(layer.top) > 1:
        axis = canonical_axis(layer, p.axis, len(bottoms[0]))
        tops.append((bottoms[0][axis],))
    return tops, [], 0


def _flatten(layer, bottoms):
    p = layer.flatten_param
    shape = bottoms[0]
    start = canonical_axis(layer, p.axis, len(shape))
    end = canonical_axis(layer, p.end_axis, len(shape))
    return [(*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])], [], 0


def _reshape(layer, bottoms):
    p = layer.reshape_param
    shape = list(bottoms[0])
    start = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
    end = len(shape) if p.num_axes == -1 else start + p.num_axes
    if not 0 <= start <= end <= len(shape):
        _fail(layer, f"axis {p.axis} / num_axes {p.num_axes} out of range for {tuple(shape)}")
    dims = list(p.shape.dim)
    new = []
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= len(shape):
                _fail(layer, f"dim {i} is 0 (copy) but the input has no axis {start + i}")
            new.append(shape[start + i])
        else:
            new.append(d)
    if new.count(-1) > 1:
        _fail(layer, "at most one -1 (inferred) dimension")
    out = shape[:start] + new + shape[end:]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(shape)
        if known == 0 or total % known:
            _fail(layer, f"cannot infer -1: {total} values into {tuple(out)}")
        out[out.index(-1)] = total // known
    if math.prod(out) != math.prod(shape):
        _fail(layer, f"cannot reshape {tuple(shape)} ({math.prod(shape)} values) into {tuple(out)}")
    return [tuple(out)], [], 0


def _blob_shape(layer, shape_msg):
    return tuple(int(d) for d in shape_msg.dim)


def _input(layer, bottoms):
    shapes = list(layer.input_param.shape)
    if len(shapes) not in (1, len(layer.top)):
        _fail(layer, f"{len(shapes)} shapes for {len(layer.top)} tops: give one, or one per top")
    return [_blob_shape(layer, shapes[min(i, len(shapes) - 1)]) for i in range(len(layer.top))], [], 0


def _dummy_data(layer, bottoms):
    p = layer.dummy_data_param
    n = len(layer.top)
    if len(p.shape):
        shapes = [_blob_shape(layer, s) for s in p.shape]
    else:
        legacy = [list(p.num), list(p.channels), list(p.height), list(p.width)]
        count = max(len(v) for v in legacy)
        shapes = [tuple(v[min(i, len(v) - 1)] for v in legacy) for i in range(count)]
    if len(shapes) not in (1, n):
        _fail(layer, f"{len(shapes)} shapes for {n} tops: give one, or one per top")
    return [shapes[min(i, len(shapes) - 1)] for i in range(n)], [], 0


def _argmax(layer, bottoms):
    p = layer.argmax_param
    shape = bottoms[0]
    if p.HasField("axis"):
        axis = canonical_axis(layer, p.axis, len(shape))
        out = list(shape)
        out[axis] = p.top_k
    else:
        out = [shape[0], 2 if p.out_max_val else 1, p.top_k]
    return [tuple(out)], [], 0


def _silence(layer, bottoms):
    return [], [], 0


SHAPE_RULES = {
    "Convolution": _convolution,
    "Deconvolution": lambda layer, b: _convolution(layer, b, deconv=True),
    "Pooling": _pooling,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "PReLU": _prelu,
    "Eltwise": _eltwise,
    "Concat": _concat,
    "Slice": _slice,
    "Split": _same,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Input": _input,
    "DummyData": _dummy_data,
    "ArgMax": _argmax,
    "Silence": _silence,
    "SoftmaxWithLoss": _loss,
    "EuclideanLoss": _loss,
    "SigmoidCrossEntropyLoss": _loss,
    "HingeLoss": _loss,
    "MultinomialLogisticLoss": _loss,
    "InfogainLoss": _loss,
    "Accuracy": _accuracy,
}
for _t in ("ReLU", "Sigmoid", "TanH", "ELU", "AbsVal", "Power", "Exp", "Log", "BNLL", "Dropout",
           "LRN", "Softmax", "MVN", "Threshold", "Clip", "Swish"):
    SHAPE_RULES[_t] = _same

# Layers whose tops come from a database (their shape needs a record or a given shape).
DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData"}

# Caffe's Layer::CheckBlobCounts (layer.hpp:359): (bottoms, tops) each an exact count or
# (min, max), max None for any number, from each layer's Exact/Min/MaxNum*Blobs.
ONE = (1, 1)
BLOB_COUNTS = {
    "Convolution": ((1, None), (1, None)), "Deconvolution": ((1, None), (1, None)),
    "Pooling": (ONE, (1, 2)), "InnerProduct": (ONE, ONE), "BatchNorm": (ONE, ONE),
    "Scale": ((1, 2), ONE), "Bias": ((1, 2), ONE), "Eltwise": ((2, None), ONE),
    "Concat": ((1, None), ONE), "Slice": (ONE, (1, None)), "Split": (ONE, (1, None)),
    "Flatten": (ONE, ONE), "Reshape": (ONE, ONE), "Input": ((0, 0), (1, None)),
    "DummyData": ((0, 0), (1, None)), "ArgMax": (ONE, ONE), "Silence": ((1, None), (0, 0)),
    "SoftmaxWithLoss": ((2, 2), (1, 2)), "EuclideanLoss": ((2, 2), ONE),
    "SigmoidCrossEntropyLoss": ((2, 2), ONE), "HingeLoss": ((2, 2), ONE),
    "MultinomialLogisticLoss": ((2, 2), ONE), "InfogainLoss": ((2, 3), (1, 2)),
    "Accuracy": ((2, 2), (1, 2)),
}
for _t in DATA_LAYERS:
    BLOB_COUNTS[_t] = ((0, 0), (1, 2))
for _t, _rule in SHAPE_RULES.items():
    if _rule is _same and _t != "Split":
        BLOB_COUNTS.setdefault(_t, (ONE, ONE))
BLOB_COUNTS["PReLU"] = (ONE, ONE)
INT_MAX = 2 ** 31 - 1


def check_counts(layer):
    """Caffe's Layer::CheckBlobCounts for the types BLOB_COUNTS knows (others pass)."""
    if layer.type not in BLOB_COUNTS:
        return
    for what, (low, high), given in (("bottom", BLOB_COUNTS[layer.type][0], len(layer.bottom)),
                                     ("top", BLOB_COUNTS[layer.type][1], len(layer.top))):
        if given < low or high is not None and given > high:
            want = str(low) if low == high else f"{low} or more" if high is None else f"{low} to {high}"
            _fail(layer, f"takes {want} {what} blob(s), {given} given")
    if layer.type in ("Convolution", "Deconvolution") and len(layer.top) != len(layer.bottom):
        _fail(layer, f"takes one top per bottom ({len(layer.bottom)} bottoms, {len(layer.top)} tops)")


def check_blob(layer, shape, what):
    """Caffe's Blob::Reshape checks (blob.cpp:22): no negative dimension, at most INT_MAX values."""
    if any(d < 0 for d in shape):
        _fail(layer, f"{what} shape {tuple(shape)} has a negative dimension")
    count = math.prod(shape)
    if count > INT_MAX:
        _fail(layer, f"{what} shape {tuple(shape)} holds {count:,} values: blob size exceeds "
                     f"INT_MAX ({INT_MAX:,})")


def wiring(net):
    """Caffe's Net::Init blob bookkeeping (net.cpp:382-433) for a phase-filtered net, without
    shapes: every bottom made by an earlier layer; a top made once, unless it is in place
    (the same name as the bottom at its index). Returns {top: index of the layer making it}."""
    made = {}
    for index, layer in enumerate(net.layer):
        for i, name in enumerate(layer.bottom):
            if name not in made:
                raise ShapeError(f"layer '{layer.name}' ({layer.type}): unknown bottom blob "
                                 f"'{name}' (no earlier layer makes it; bottom {i})")
        for i, name in enumerate(layer.top):
            in_place = i < len(layer.bottom) and layer.bottom[i] == name
            if name in made and not in_place:
                raise ShapeError(f"layer '{layer.name}' ({layer.type}): top blob '{name}' "
                                 "produced by multiple sources")
            made[name] = index
    return made


def infer(net, data_shapes=None):
    """Shapes of every layer of a phase-filtered NetParameter.

    data_shapes(layer) -> list of top shapes, for Data-type layers (see sepnets.caffe.db).
    Returns (list of LayerShapes, {blob name: shape}).
    """
    blobs = {}
    result = []
    for layer in net.layer:
        if layer.type not in CAFFE_LAYER_TYPES:
            raise ShapeError(f"layer '{layer.name}': unknown layer type '{layer.type}' "
                             "(not a Caffe 1.0 layer)")
    wiring(net)
    for layer in net.layer:
        check_counts(layer)
        bottoms = [blobs[b] for b in layer.bottom]
        kernel = None
        if layer.type in DATA_LAYERS:
            if data_shapes is None:
                raise ShapeError(f"layer '{layer.name}' ({layer.type}): its shape comes from "
                                 "its data source")
            tops, params, macs = data_shapes(layer), [], 0
        elif layer.type in SHAPE_RULES:
            out = SHAPE_RULES[layer.type](layer, bottoms)
            tops, params, macs = out[:3]
            if len(out) > 3:
                kernel = out[3]
        else:
            raise ShapeError(f"layer '{layer.name}': shape inference for Caffe layer type "
                             f"'{layer.type}' is not implemented")
        if len(tops) != len(layer.top) and layer.type != "Silence":
            raise ShapeError(f"layer '{layer.name}' ({layer.type}): {len(layer.top)} tops "
                             f"given, {len(tops)} expected")
        for name, shape in zip(layer.top, tops):
            check_blob(layer, shape, f"top '{name}'")
            blobs[name] = tuple(shape)
        for i, shape in enumerate(params):
            check_blob(layer, shape, f"parameter {i}")
        result.append(LayerShapes(layer.name, layer.type, list(layer.bottom), list(layer.top),
                                  [tuple(t) for t in tops], [tuple(p) for p in params],
                                  int(macs), kernel))
    return result, blobs
