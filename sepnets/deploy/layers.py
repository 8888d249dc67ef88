"""One converter per Caffe layer type (CONVERTERS), each reproducing the TEST-phase forward
pass of Caffe 1.0's layer (src/caffe/layers/<type>_layer.cpp, cited at Forward_cpu) with ONNX
operators at convert.OPSET, where ONNX's defaults differ from Caffe's.

A converter gets a convert.Step: the layer, its bottoms as ONNX values with their shapes
(from sepnets.caffe.shapes, Caffe's shape rules), its top shapes, its parameter blobs (stored by
sepnets.deploy.storage) and the graph. Axis 0 is the dynamic batch: shapes given to Reshape
copy it (0) or infer it (-1), never fix it.
"""
import numpy as np

from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import canonical_axis, conv_geometry

CONVERTERS = {}

Pool = caffe_pb2.PoolingParameter
LRN = caffe_pb2.LRNParameter
Eltwise = caffe_pb2.EltwiseParameter


def converter(*types):
    def register(function):
        for name in types:
            CONVERTERS[name] = function
        return function
    return register


# ---------------------------------------------------------------- inputs and copies

@converter("Input")
def input_layer(step):
    """input_layer.cpp: each top is a net input of the shape input_param gives (one shape for
    all tops, or one per top); here a graph input named like the blob, its batch dynamic."""
    for index, shape in enumerate(step.out_shapes):
        step.graph_input(index, shape)


@converter("Split", "Dropout")
def identity(step):
    """split_layer.cpp:26 copies the bottom to every top; dropout_layer.cpp:31 passes it
    through unchanged outside TRAIN (Caffe's dropout scales in TRAIN only)."""
    for index in range(len(step.out_shapes)):
        step.out("Identity", step.inputs[:1], index)


# ---------------------------------------------------------------- learned layers

@converter("Convolution")
def convolution(step):
    """conv_layer.cpp:25 (im2col + gemm per group, then the bias): ONNX Conv with Caffe's
    kernel/stride/pad/dilation (conv_geometry: once, per axis, or *_h/*_w) and group. Every
    bottom is convolved with the same weights into the top of the same index."""
    p = step.layer.convolution_param
    shape = step.in_shapes[0]
    if canonical_axis(step.layer, p.axis, len(shape)) != 1:
        step.fail(f"convolution over axis {p.axis}: only the channel axis 1 is exported")
    kernel, stride, pad, dilation = conv_geometry(step.layer, len(shape) - 2)
    params = [step.param(0, channel_axis=0)] + ([step.param(1)] if p.bias_term else [])
    for index, x in enumerate(step.inputs):
        step.out("Conv", [x] + params, index, group=p.group, kernel_shape=kernel,
                 strides=stride, pads=pad + pad, dilations=dilation)


@converter("InnerProduct")
def inner_product(step):
    """inner_product_layer.cpp:84: the axes from `axis` on are flattened to K and the first
    ones kept (M inner products); weights (N, K), or (K, N) with transpose. ONNX Flatten at
    the same axis, Gemm, and the kept axes restored."""
    p = step.layer.inner_product_param
    shape = step.in_shapes[0]
    axis = canonical_axis(step.layer, p.axis, len(shape))
    flat = step.op("Flatten", step.inputs[:1], "flat", axis=axis)
    weights = step.param(0, channel_axis=0 if not p.transpose else 1)
    inputs = [flat, weights] + ([step.param(1)] if p.bias_term else [])
    gemm = dict(transB=0 if p.transpose else 1)
    if axis == 1:
        step.out("Gemm", inputs, **gemm)
        return
    product = step.op("Gemm", inputs, "gemm", **gemm)
    kept = [-1, *shape[1:axis]] if axis else []
    step.out("Reshape", [product, step.ints("shape", kept + [p.num_output])])


@converter("BatchNorm")
def batch_norm(step):
    """batch_norm_layer.cpp:87 with the stored statistics (use_global_stats, Caffe's default in
    TEST): blob 2 is the moving-average factor f, the mean and variance are blob 0 and blob 1
    times 1/f (0 when f is 0, line 100), and y = (x - mean) / sqrt(variance + eps) per
    channel (axis 1). mean and sqrt(variance + eps) are computed here in float32 with Caffe's
    operations in Caffe's order (scale, add eps, sqrt: lines 100-151), so the graph keeps two
    nodes and Caffe's values."""
    p = step.layer.batch_norm_param
    if p.HasField("use_global_stats") and not p.use_global_stats:
        step.fail("use_global_stats: false normalizes each TEST batch by its own statistics; "
                  "only the stored statistics (the default in TEST) are exported")
    shape = step.in_shapes[0]
    per_channel = ((shape[1] if len(shape) > 1 else 1),) + (1,) * max(len(shape) - 2, 0)
    mean, variance, factor = (step.param_array(i) for i in range(3))
    scale = np.float32(0) if factor.ravel()[0] == 0 else np.float32(1) / factor.ravel()[0]
    deviation = np.sqrt(variance * scale + np.float32(p.eps))
    centred = step.op("Sub", [step.inputs[0], step.derived("mean", (mean * scale).reshape(per_channel))],
                      "centred")
    step.out("Div", [centred, step.derived("std", deviation.reshape(per_channel))])


def _broadcast_shape(param_shape, axis, ndim):
    """A parameter applied from `axis` on (scale_layer.cpp, bias_layer.cpp) as an ONNX
    broadcast: its axes, then 1 for the remaining axes of the input."""
    return tuple(param_shape) + (1,) * (ndim - axis - len(param_shape))


def _operand(step, index_if_learned, param_shape, axis, ndim):
    """The scale or bias operand: a learned blob, or the second bottom (reshaped in the graph;
    its axis 0 is the batch when axis is 0, so it is copied, not fixed)."""
    target = _broadcast_shape(param_shape, axis, ndim)
    if len(step.inputs) == 1:
        return step.param(index_if_learned, shape=target)
    operand = step.inputs[1]
    if len(target) == len(param_shape):
        return operand
    dims = [0 if axis == 0 and i == 0 else d for i, d in enumerate(target)]
    return step.op("Reshape", [operand, step.ints("operand_shape", dims)], "operand")


def _param_axis(step, p, param_shape):
    """Caffe's axis of a scale/bias: 0 for a scalar (num_axes 0), else the canonical axis."""
    ndim = len(step.in_shapes[0])
    return 0 if not param_shape else canonical_axis(step.layer, p.axis, ndim)


def _param_shape(step):
    """The scale/bias shape: the second bottom's, or the learned blob's (sepnets.caffe.shapes)."""
    return step.in_shapes[1] if len(step.inputs) > 1 else step.param_shapes[0]


@converter("Scale")
def scale(step):
    """scale_layer.cpp:117: y = x * s, s broadcast from `axis` over num_axes axes (a learned
    blob 0, or bottom 1), then with bias_term a Bias layer over the same axes (learned blob
    1, or blob 0 when s is bottom 1)."""
    p = step.layer.scale_param
    shape = _param_shape(step)
    axis = _param_axis(step, p, shape)
    ndim = len(step.in_shapes[0])
    product = [step.inputs[0], _operand(step, 0, shape, axis, ndim)]
    if not p.bias_term:
        step.out("Mul", product)
        return
    bias_index = 1 if len(step.inputs) == 1 else 0
    bias = step.param(bias_index, shape=_broadcast_shape(shape, axis, ndim))
    step.out("Add", [step.op("Mul", product, "scaled"), bias])


@converter("Bias")
def bias(step):
    """bias_layer.cpp:72: y = x + b, b broadcast from `axis` (a learned blob 0, or bottom 1)."""
    shape = _param_shape(step)
    axis = _param_axis(step, step.layer.bias_param, shape)
    operand = _operand(step, 0, shape, axis, len(step.in_shapes[0]))
    step.out("Add", [step.inputs[0], operand])


# ---------------------------------------------------------------- pooling and normalization

def _pool_window(step, height, width):
    """(kernel, stride, pad) as (h, w) pairs, pooling_layer.cpp:13 (LayerSetUp)."""
    p = step.layer.pooling_param
    if p.global_pooling:
        return (height, width), (1, 1), (0, 0)
    kernel = (p.kernel_size,) * 2 if p.HasField("kernel_size") else (p.kernel_h, p.kernel_w)
    stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride,) * 2
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad,) * 2
    return kernel, stride, pad


def _end_pad(size, begin, kernel, stride, out):
    """The padding after an axis that makes ONNX's floor rule count Caffe's `out` windows.

    Caffe rounds the window count up (CEIL, its default) and then drops a last window that
    would start in the padding (pooling_layer.cpp:90-111); the last window may hang past the
    padded input, where Caffe clips it. So ONNX gets exactly the padding the last window
    reaches, and floor rounding (ceil_mode's rule for windows starting in the padding is
    not Caffe's)."""
    end = max(0, (out - 1) * stride + kernel - size - begin)
    assert (size + begin + end - kernel) // stride + 1 == out, (size, begin, kernel, stride, out)
    return end


def average_pool(step, x, size, kernel, stride, pad, out, what="pool"):
    """Caffe's AVE pooling (pooling_layer.cpp:194-219): each window's sum over the image
    divided by the window's cells inside the symmetrically padded image [-pad, size + pad),
    not counting where it hangs further. In ONNX: zero-pad by `pad` on both sides (those cells
    count), then AveragePool without counting the extra end padding."""
    if any(pad):
        x = step.op("Pad", [x, step.ints("pads", [0, 0, *pad, 0, 0, *pad])], "padded")
    padded = [s + 2 * p for s, p in zip(size, pad)]
    ends = [_end_pad(s, 0, k, st, o) for s, k, st, o in zip(padded, kernel, stride, out)]
    attrs = dict(kernel_shape=kernel, strides=stride, pads=[0, 0, *ends], count_include_pad=0)
    if what is None:
        return step.out("AveragePool", [x], **attrs)
    return step.op("AveragePool", [x], what, **attrs)


@converter("Pooling")
def pooling(step):
    """pooling_layer.cpp:141: MAX takes the maximum of each window clipped to the image
    (padding never wins: ONNX MaxPool's padding is ignored too); AVE as average_pool; the
    window count from sepnets.caffe.shapes (Caffe's CEIL/FLOOR rounding and its rule for the last
    window). Global pooling is a window of the whole input."""
    p = step.layer.pooling_param
    if len(step.out_shapes) > 1:
        step.fail("a second top (MAX pooling's argmax mask) is not exported")
    if p.pool not in (Pool.MAX, Pool.AVE):
        step.fail(f"{Pool.PoolMethod.Name(p.pool)} pooling is not exported (MAX and AVE are)")
    _, _, height, width = step.in_shapes[0]
    out = step.out_shapes[0][2:]
    if p.global_pooling:
        step.out("GlobalMaxPool" if p.pool == Pool.MAX else "GlobalAveragePool", step.inputs)
        return
    kernel, stride, pad = _pool_window(step, height, width)
    if any((o - 1) * st - pd >= size for size, st, pd, o in zip((height, width), stride, pad, out)):
        step.fail(f"the last pooling window starts outside the {height}x{width} input (kernel "
                  f"{kernel}, stride {stride}, pad {pad}): stock Caffe reads no input there "
                  "(-FLT_MAX or 0/0); change the kernel, stride or pad")
    if p.pool == Pool.AVE:
        average_pool(step, step.inputs[0], (height, width), kernel, stride, pad, out, None)
        return
    ends = [_end_pad(s, b, k, st, o) for s, b, k, st, o in zip((height, width), pad, kernel, stride, out)]
    step.out("MaxPool", step.inputs, kernel_shape=kernel, strides=stride, pads=[*pad, *ends])


@converter("LRN")
def lrn(step):
    """lrn_layer.cpp:93. ACROSS_CHANNELS (CrossChannelForward_cpu, line 108): y = x *
    (k + alpha/size * sum of x^2 over `size` channels)^-beta, which is ONNX LRN (it divides
    alpha by size as Caffe does). WITHIN_CHANNEL (lines 18-53): y = x * (1 + alpha * s)^-beta
    with s Caffe's AVE pooling of x^2 over size x size windows, pad (size - 1) / 2; k is not
    used there."""
    p = step.layer.lrn_param
    if p.local_size % 2 == 0:
        step.fail(f"local_size {p.local_size}: Caffe's LRN takes odd sizes only")
    x = step.inputs[0]
    if p.norm_region == LRN.ACROSS_CHANNELS:
        step.out("LRN", [x], size=p.local_size, alpha=p.alpha, beta=p.beta, bias=p.k)
        return
    size, pad = (p.local_size,) * 2, ((p.local_size - 1) // 2,) * 2
    squares = step.op("Mul", [x, x], "square")
    mean = average_pool(step, squares, step.in_shapes[0][2:], size, (1, 1), pad,
                        step.out_shapes[0][2:], "square_mean")
    scaled = step.op("Mul", [mean, step.floats("alpha", p.alpha)], "scaled")
    shifted = step.op("Add", [scaled, step.floats("one", 1)], "shifted")
    power = step.op("Pow", [shifted, step.floats("minus_beta", -p.beta)], "power")
    step.out("Mul", [x, power])


# ---------------------------------------------------------------- element-wise and shapes

@converter("ReLU")
def relu(step):
    """relu_layer.cpp:9: max(x, 0) + negative_slope * min(x, 0): ONNX Relu, or LeakyRelu."""
    slope = step.layer.relu_param.negative_slope
    if slope:
        step.out("LeakyRelu", step.inputs, alpha=slope)
    else:
        step.out("Relu", step.inputs)


@converter("Sigmoid")
def sigmoid(step):
    """sigmoid_layer.cpp:14: 1 / (1 + exp(-x))."""
    step.out("Sigmoid", step.inputs)


@converter("TanH")
def tanh(step):
    """tanh_layer.cpp:11: tanh(x)."""
    step.out("Tanh", step.inputs)


@converter("Softmax")
def softmax(step):
    """softmax_layer.cpp:27: exp(x - max) normalized over one axis (softmax_param.axis,
    default 1), which is ONNX Softmax's axis since opset 13 (before, it flattened)."""
    axis = canonical_axis(step.layer, step.layer.softmax_param.axis, len(step.in_shapes[0]))
    step.out("Softmax", step.inputs, axis=axis)


@converter("Eltwise")
def eltwise(step):
    """eltwise_layer.cpp:47: PROD multiplies the bottoms in order; SUM adds coeff_i * x_i
    (coefficients only for SUM, one per bottom); MAX takes the largest."""
    p = step.layer.eltwise_param
    coeffs = list(p.coeff)
    if coeffs and (p.operation != Eltwise.SUM or len(coeffs) != len(step.inputs)):
        step.fail("coeff is for SUM only, one per bottom")
    if p.operation == Eltwise.PROD:
        value = step.inputs[0]
        for i, x in enumerate(step.inputs[1:-1], 1):
            value = step.op("Mul", [value, x], f"product{i}")
        step.out("Mul", [value, step.inputs[-1]])
    elif p.operation == Eltwise.SUM:
        terms = [x if c == 1 else step.op("Mul", [x, step.floats(f"coeff{i}", c)], f"term{i}")
                 for i, (x, c) in enumerate(zip(step.inputs, coeffs or [1] * len(step.inputs)))]
        step.out("Sum", terms)
    else:
        step.out("Max", step.inputs)


def _concat_axis(step, param, legacy_field):
    """Caffe's concat_dim/slice_dim (legacy, non-negative) or axis (canonical)."""
    ndim = len(step.in_shapes[0])
    if param.HasField(legacy_field):
        return getattr(param, legacy_field)
    return canonical_axis(step.layer, param.axis, ndim)


@converter("Concat")
def concat(step):
    """concat_layer.cpp:57: the bottoms joined along `axis` (or concat_dim)."""
    step.out("Concat", step.inputs, axis=_concat_axis(step, step.layer.concat_param, "concat_dim"))


@converter("Slice")
def slice_layer(step):
    """slice_layer.cpp:78: the bottom cut along `axis` (or slice_dim) at slice_point, or in
    equal parts; the part sizes are the tops' shapes (sepnets.caffe.shapes)."""
    axis = _concat_axis(step, step.layer.slice_param, "slice_dim")
    sizes = [shape[axis] for shape in step.out_shapes]
    step.out("Split", [step.inputs[0], step.ints("split", sizes)], list(range(len(sizes))), axis=axis)


@converter("Flatten")
def flatten(step):
    """flatten_layer.cpp:30 (its Reshape, line 12): axes axis..end_axis become one."""
    p = step.layer.flatten_param
    shape = step.in_shapes[0]
    start = canonical_axis(step.layer, p.axis, len(shape))
    end = canonical_axis(step.layer, p.end_axis, len(shape))
    dims = [0] * start + [-1] + list(shape[end + 1:])
    step.out("Reshape", [step.inputs[0], step.ints("shape", dims)])


@converter("Reshape")
def reshape(step):
    """reshape_layer.cpp:31: axes axis..axis+num_axes are replaced by shape's dims, where 0
    copies the input's axis at that place and -1 is inferred, which is ONNX Reshape's 0 and
    -1 at the same index; the axes before are copied (0), those after given."""
    p = step.layer.reshape_param
    shape = step.in_shapes[0]
    start = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
    end = len(shape) if p.num_axes == -1 else start + p.num_axes
    dims = [0] * start + list(p.shape.dim) + list(shape[end:])
    step.out("Reshape", [step.inputs[0], step.ints("shape", dims)])
