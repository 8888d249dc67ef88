"""Shape inference for Caffe nets, following each layer's LayerSetUp/Reshape in Caffe 1.0.

infer(net) walks the (already phase-filtered) layers in order and returns, per layer, the
shapes of its tops and of its parameter blobs and its multiply-accumulates per forward pass.
Blob shapes are tuples; Caffe's loss and accuracy outputs are 0-axis (scalar) blobs: ().
"""
import math
from dataclasses import dataclass, field

from sepnets.caffe.proto import CAFFE_LAYER_TYPES, caffe_pb2
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
    caffe.proto's default). `what` names the repeated field (kernel_size, stride, ...)."""
    values = list(values)
    if hw is not None:
        pair = "{0}_h/{0}_w".format(what.removesuffix("_size"))
        if n != 2:
            _fail(layer, f"{pair} can only be used for 2-D convolution")
        if values:
            _fail(layer, f"either {what} or {pair} should be specified; not both")
        return list(hw)
    if not values:
        return [default] * n
    if len(values) not in (1, n):
        _fail(layer, f"give {what} once or once per spatial axis ({n}), not {len(values)} times")
    return values * n if len(values) == 1 else values


def _hw(p, name):
    """*_h and *_w when either is set: the other then takes its proto default, 0, as Caffe
    reads it (base_conv_layer.cpp); None when neither is."""
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
    if min(stride) <= 0:  # base_conv_layer.cpp:79; Caffe would divide by it
        _fail(layer, "stride dimensions must be nonzero")
    pad = _spatial(layer, "pad", p.pad, _hw(p, "pad"), 0, n_spatial)
    dilation = _spatial(layer, "dilation", p.dilation, None, 1, n_spatial)
    if min(dilation) <= 0:  # Caffe has no CHECK: a 0 puts every kernel tap on one pixel,
        _fail(layer, "dilation must be positive")  # which neither torch nor ONNX computes
    return kernel, stride, pad, dilation


def _convolution(layer, bottoms, deconv=False):
    p = layer.convolution_param
    shape = bottoms[0]
    axis = canonical_axis(layer, p.axis, len(shape))
    n_spatial = len(shape) - axis - 1
    if n_spatial < 1:
        _fail(layer, f"input {shape} has no spatial axes after the channel axis")
    kernel, stride, pad, dilation = conv_geometry(layer, n_spatial)
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
    # PoolingLayer::LayerSetUp (pooling_layer.cpp:17-75), its CHECKs in its order
    has = p.HasField
    if p.global_pooling:
        if has("kernel_size") or has("kernel_h") or has("kernel_w"):
            _fail(layer, "with global_pooling: true the filter size cannot be specified")
        kh, kw = h, w
    elif has("kernel_size") and has("kernel_h") and has("kernel_w"):
        _fail(layer, "filter size is kernel_size OR kernel_h and kernel_w; not both")
    elif has("kernel_size"):
        kh = kw = p.kernel_size
    elif has("kernel_h") and has("kernel_w"):
        kh, kw = p.kernel_h, p.kernel_w
    else:
        _fail(layer, "kernel_size (or kernel_h and kernel_w) is required")
    for what in ("pad", "stride"):
        if has(f"{what}_h") or has(f"{what}_w"):
            if has(what) or not (has(f"{what}_h") and has(f"{what}_w")):
                _fail(layer, f"{what} is {what} OR {what}_h and {what}_w are required")
    ph, pw = (p.pad_h, p.pad_w) if has("pad_h") else (p.pad, p.pad)
    sh, sw = (p.stride_h, p.stride_w) if has("stride_h") else (p.stride, p.stride)
    if kh <= 0 or kw <= 0:
        _fail(layer, "filter dimensions cannot be zero")
    if p.global_pooling and (ph or pw or sh != 1 or sw != 1):
        _fail(layer, "with global_pooling: true only pad = 0 and stride = 1")
    if sh <= 0 or sw <= 0:   # Caffe has no CHECK here: its Reshape divides by the stride
        _fail(layer, "stride dimensions must be nonzero")
    if ph or pw:
        if p.pool not in (p.AVE, p.MAX):
            _fail(layer, "padding implemented only for average and max pooling")
        if ph >= kh or pw >= kw:
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
    if len(shape) < 2:
        _fail(layer, "Number of axes of bottom blob must be >=2.")
    # a shared slope is a 0-axis blob in Caffe (prelu_layer.cpp: Blob(vector<int>(0)))
    return [shape], [() if layer.prelu_param.channel_shared else (shape[1],)], 0


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
    """argmax_layer.cpp Reshape: along `axis`, top_k values there; without it, per item
    (N, 1 or 2 with out_max_val, top_k), padded with 1s to the bottom's axes."""
    p = layer.argmax_param
    shape = bottoms[0]
    if p.top_k < 1:
        _fail(layer, "top k must not be less than 1.")
    if p.HasField("axis"):
        axis = canonical_axis(layer, p.axis, len(shape))
        if p.top_k > shape[axis]:
            _fail(layer, "top_k must be less than or equal to the dimension of the axis.")
        out = list(shape)
        out[axis] = p.top_k
    else:
        if p.top_k > math.prod(shape[1:]):
            _fail(layer, "top_k must be less than or equal to the dimension of the flattened "
                         "bottom blob per instance.")
        out = [1] * max(len(shape), 3)
        out[0], out[1], out[2] = shape[0], 2 if p.out_max_val else 1, p.top_k
    return [tuple(out)], [], 0


def legacy_axes(layer, shape):
    """(num, channels, height, width) as Caffe's Blob accessors read them (LegacyShape(0..3),
    blob.hpp): the first four axes, 1 past the last, so (N, C) reads as (N, C, 1, 1); more
    than 4 axes stop Caffe. (wire.legacy_shape is the other legacy form: a BlobProto's
    num/channels/height/width fields, padded in front.)"""
    if len(shape) > 4:
        _fail(layer, f"cannot use legacy accessors on a {len(shape)}-axis blob {shape}")
    return tuple(shape) + (1,) * (4 - len(shape))


def _mvn(layer, bottoms):
    # mvn_layer.cpp reshapes its top to (num, channels, height, width)
    return [legacy_axes(layer, bottoms[0])], [], 0


def crop_geometry(layer, shape, reference):
    """crop_layer.cpp: axes from crop_param.axis on take the reference blob's sizes, at the
    offset given once for all of them or once per axis (default 0). Returns (top shape,
    offset per axis)."""
    p = layer.crop_param
    start = canonical_axis(layer, p.axis, len(shape))
    offsets = list(p.offset)
    if len(offsets) > 1 and start + len(offsets) != len(shape):
        _fail(layer, "number of offset values specified must be equal to the number of "
                     "dimensions following axis.")
    if len(reference) != len(shape):
        _fail(layer, f"the reference blob {reference} must have the {len(shape)} axes of the "
                     f"input {shape}")
    top, where = list(shape), [0] * len(shape)
    for i in range(start, len(shape)):
        offset = offsets[0] if len(offsets) == 1 else offsets[i - start] if offsets else 0
        if shape[i] - offset < reference[i]:
            _fail(layer, f"the crop for dimension {i} is out-of-bounds with size "
                         f"{reference[i]} and offset {offset}")
        top[i], where[i] = reference[i], offset
    return tuple(top), where


def _crop(layer, bottoms):
    return [crop_geometry(layer, bottoms[0], bottoms[1])[0]], [], 0


def _tile(layer, bottoms):
    p = layer.tile_param
    shape = list(bottoms[0])
    axis = canonical_axis(layer, p.axis, len(shape))
    if not p.HasField("tiles"):
        _fail(layer, "Number of tiles must be specified")
    if p.tiles <= 0:
        _fail(layer, "Number of tiles must be positive.")
    shape[axis] *= p.tiles
    return [tuple(shape)], [], 0


def _reduction(layer, bottoms):
    # the axes from `axis` on are reduced; the top keeps the ones before it
    shape = bottoms[0]
    axis = canonical_axis(layer, layer.reduction_param.axis, len(shape))
    return [tuple(shape[:axis])], [], 0


def _embed(layer, bottoms):
    p = layer.embed_param
    if p.num_output <= 0:
        _fail(layer, "EmbedLayer num_output must be positive.")
    if p.input_dim <= 0:
        _fail(layer, "EmbedLayer input_dim must be positive.")
    params = [(p.input_dim, p.num_output)] + ([(p.num_output,)] if p.bias_term else [])
    return [tuple(bottoms[0]) + (p.num_output,)], params, 0


def _filter(layer, bottoms):
    """filter_layer.cpp: the tops are the bottoms but the last (the selector), with as many
    items as the selector has nonzero values; until the first forward pass, all of them."""
    selector = bottoms[-1]
    if len(layer.top) != len(bottoms) - 1:
        _fail(layer, f"takes one top per bottom but the selector ({len(bottoms) - 1} tops), "
                     f"{len(layer.top)} given")
    if any(d != 1 for d in selector[1:]):
        _fail(layer, "Selector blob dimensions must be singletons (1), except the first")
    for shape in bottoms[:-1]:
        if shape[0] != selector[0]:
            _fail(layer, "Each bottom should have the same 0th dimension as the selector blob")
    return [tuple(shape) for shape in bottoms[:-1]], [], 0


def _batch_reindex(layer, bottoms):
    shape, indices = bottoms
    if len(indices) != 1:
        _fail(layer, f"the index blob must have 1 axis, not {indices}")
    return [(indices[0],) + tuple(shape[1:])], [], 0


def _parameter(layer, bottoms):
    shape = _blob_shape(layer, layer.parameter_param.shape)
    return [shape], [shape], 0


def spp_levels(layer, shape):
    """spp_layer.cpp GetPoolingParam: pyramid level i pools the (N, C, H, W) input into
    2^i x 2^i bins, with kernel = stride = ceil(size / bins) and pad = (kernel * bins - size
    + 1) / 2. Returns [(the level's Pooling LayerParameter, its top shape)]."""
    p = layer.spp_param
    if len(shape) != 4:
        _fail(layer, f"Input must have 4 axes, corresponding to (num, channels, height, width), "
                     f"not {shape}")
    if p.pyramid_height < 1:
        _fail(layer, "pyramid_height must be at least 1")
    height, width = shape[2:]
    levels = []
    for level in range(p.pyramid_height):
        bins = 2 ** level
        kernel = [math.ceil(size / bins) for size in (height, width)]
        pad = [(k * bins - size + 1) // 2 for k, size in zip(kernel, (height, width))]
        pooling = caffe_pb2.LayerParameter(name=layer.name, type="Pooling",
                                           bottom=layer.bottom[:1], top=layer.top[:1])
        q = pooling.pooling_param
        q.kernel_h, q.kernel_w = kernel
        q.stride_h, q.stride_w = kernel
        q.pad_h, q.pad_w = pad
        q.pool = p.pool  # SPP's MAX, AVE, STOCHASTIC are Pooling's
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            _fail(layer, f"pyramid level {level} pools {height}x{width} into {bins}x{bins} bins "
                         f"with kernel {kernel} and pad {pad}, which Caffe's Pooling refuses "
                         "(pad must be smaller than the kernel): lower pyramid_height")
        levels.append((pooling, _pooling(pooling, [shape])[0][0]))
    return levels


def _spp(layer, bottoms):
    levels = spp_levels(layer, bottoms[0])
    if len(levels) == 1:  # a single level is its Pooling layer's output, unflattened
        return [levels[0][1]], [], 0
    n = bottoms[0][0]
    return [(n, sum(math.prod(top[1:]) for _, top in levels))], [], 0


def _im2col(layer, bottoms):
    p = layer.convolution_param
    shape = list(bottoms[0])
    axis = canonical_axis(layer, p.axis, len(shape))
    n_spatial = len(shape) - axis - 1
    if n_spatial < 1:
        _fail(layer, f"input {tuple(shape)} has no spatial axes after the channel axis")
    kernel, stride, pad, dilation = conv_geometry(layer, n_spatial)
    for i, (k, s, pd, d) in enumerate(zip(kernel, stride, pad, dilation)):
        shape[axis] *= k
        size = shape[axis + 1 + i]
        shape[axis + 1 + i] = (size + 2 * pd - (d * (k - 1) + 1)) // s + 1
    return [tuple(shape)], [], 0


def recurrent_geometry(layer, bottoms, hidden_blobs):
    """recurrent_layer.cpp LayerSetUp: x is (T, N, ...), cont (T, N); with expose_hidden the
    `hidden_blobs` initial states (1, N, num_output) follow; an optional static input
    (N, ...) comes before them. Returns (T, N, num_output, static input shape or None)."""
    p = layer.recurrent_param
    x, cont = bottoms[0], bottoms[1]
    if len(x) < 2:
        _fail(layer, "bottom[0] must have at least 2 axes -- (#timesteps, #streams, ...)")
    if len(cont) != 2 or tuple(cont) != tuple(x[:2]):
        _fail(layer, f"bottom[1] must have exactly 2 axes -- (#timesteps, #streams): {x[:2]}, "
                     f"not {cont}")
    if p.num_output <= 0:
        _fail(layer, "num_output must be positive")
    steps, streams = x[:2]
    exposed = hidden_blobs if p.expose_hidden else 0
    static = bottoms[2] if len(bottoms) > 2 + exposed else None
    if static is not None and (len(static) < 1 or static[0] != streams):
        _fail(layer, f"the static input {static} must have {streams} (#streams) items")
    for shape in bottoms[len(bottoms) - exposed:]:
        if tuple(shape) != (1, streams, p.num_output):
            _fail(layer, f"an initial hidden state must be {(1, streams, p.num_output)}, not "
                         f"{shape}")
    return steps, streams, p.num_output, static


def _recurrent(layer, bottoms, gates, hidden_blobs):
    """RNN (gates 1, one hidden blob h) and LSTM (gates 4: i, f, o, g; hidden blobs h, c):
    the parameters of the net rnn_layer.cpp / lstm_layer.cpp unroll, in its order."""
    steps, streams, hidden, static = recurrent_geometry(layer, bottoms, hidden_blobs)
    inputs = math.prod(bottoms[0][2:])
    width = gates * hidden
    params = [(width, inputs), (width,)]  # W_xh, b_h (LSTM: W_xc, b_c)
    macs = steps * streams * (inputs * width + hidden * width)
    if static is not None:
        params.append((width, math.prod(static[1:])))  # W_xh_static (LSTM: W_xc_static)
        macs += streams * math.prod(static[1:]) * width
    params.append((width, hidden))  # W_hh (LSTM: W_hc)
    if gates == 1:
        params += [(hidden, hidden), (hidden,)]  # W_ho, b_o
        macs += steps * streams * hidden * hidden
    tops = [(steps, streams, hidden)]
    if layer.recurrent_param.expose_hidden:
        tops += [(1, streams, hidden)] * hidden_blobs
    return tops, params, macs


def _lstm_unit(layer, bottoms):
    previous, gates, cont = bottoms
    if len(previous) != 3 or len(gates) != 3 or len(cont) != 2:
        _fail(layer, "bottoms must be c_prev (1, N, D), gates (1, N, 4D) and cont (1, N)")
    if previous[0] != 1 or gates[0] != 1 or cont[0] != 1 or not (
            previous[1] == gates[1] == cont[1]) or gates[2] != 4 * previous[2]:
        _fail(layer, f"bottoms must be c_prev (1, N, D), gates (1, N, 4D) and cont (1, N), not "
                     f"{previous}, {gates}, {cont}")
    return [tuple(previous)] * 2, [], 0


def _memory_data(layer, bottoms):
    p = layer.memory_data_param
    if p.batch_size * p.channels * p.height * p.width <= 0:
        _fail(layer, "batch_size, channels, height, and width must be specified and positive "
                     "in memory_data_param")
    return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)], [], 0


def _hdf5_output(layer, bottoms):
    data, label = bottoms
    if legacy_axes(layer, data)[0] != legacy_axes(layer, label)[0]:
        _fail(layer, "data blob and label blob must have the same batch size")
    return [], [], 0


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
    "HDF5Output": _hdf5_output,
    "MVN": _mvn,
    "Crop": _crop,
    "Tile": _tile,
    "Reduction": _reduction,
    "Embed": _embed,
    "Filter": _filter,
    "BatchReindex": _batch_reindex,
    "Parameter": _parameter,
    "SPP": _spp,
    "Im2col": _im2col,
    "RNN": lambda layer, b: _recurrent(layer, b, gates=1, hidden_blobs=1),
    "LSTM": lambda layer, b: _recurrent(layer, b, gates=4, hidden_blobs=2),
    "LSTMUnit": _lstm_unit,
    "MemoryData": _memory_data,
    "ContrastiveLoss": _loss,
    "SoftmaxWithLoss": _loss,
    "EuclideanLoss": _loss,
    "SigmoidCrossEntropyLoss": _loss,
    "HingeLoss": _loss,
    "MultinomialLogisticLoss": _loss,
    "InfogainLoss": _loss,
    "Accuracy": _accuracy,
}
for _t in ("ReLU", "Sigmoid", "TanH", "ELU", "AbsVal", "Power", "Exp", "Log", "BNLL", "Dropout",
           "LRN", "Softmax", "Threshold", "Clip", "Swish"):
    SHAPE_RULES[_t] = _same

# Layers whose tops come from a database (their shape needs a record or a given shape).
DATA_LAYERS = {"Data", "ImageData", "HDF5Data", "WindowData"}

# Caffe's Layer::CheckBlobCounts (layer.hpp:359): (bottoms, tops) each an exact count or
# (min, max), max None for any number, from each layer's Exact/Min/MaxNum*Blobs (in
# include/caffe/layers/<type>_layer.hpp), or a function of the layer for the recurrent ones.
ONE = (1, 1)
NONE = (0, 0)


def _recurrent_counts(hidden_blobs):
    """recurrent_layer.hpp:37-55: x and cont, the exposed hidden states, one optional static
    input; one top, plus the hidden states when exposed."""
    def counts(layer):
        exposed = hidden_blobs if layer.recurrent_param.expose_hidden else 0
        return (2 + exposed, 3 + exposed), (1 + exposed, 1 + exposed)
    return counts


BLOB_COUNTS = {
    "Convolution": ((1, None), (1, None)), "Deconvolution": ((1, None), (1, None)),
    "Pooling": (ONE, (1, 2)), "InnerProduct": (ONE, ONE), "BatchNorm": (ONE, ONE),
    "Scale": ((1, 2), ONE), "Bias": ((1, 2), ONE), "Eltwise": ((2, None), ONE),
    "Concat": ((1, None), ONE), "Slice": (ONE, (1, None)), "Split": (ONE, (1, None)),
    "Flatten": (ONE, ONE), "Reshape": (ONE, ONE), "Input": (NONE, (1, None)),
    "DummyData": (NONE, (1, None)), "ArgMax": (ONE, ONE), "Silence": ((1, None), NONE),
    "SoftmaxWithLoss": ((2, 2), (1, 2)), "EuclideanLoss": ((2, 2), ONE),
    "SigmoidCrossEntropyLoss": ((2, 2), ONE), "HingeLoss": ((2, 2), ONE),
    "MultinomialLogisticLoss": ((2, 2), ONE), "InfogainLoss": ((2, 3), (1, 2)),
    "ContrastiveLoss": ((3, 3), ONE), "Accuracy": ((2, 2), (1, 2)),
    "Data": (NONE, (1, 2)), "ImageData": (NONE, (2, 2)), "WindowData": (NONE, (2, 2)),
    "HDF5Data": (NONE, (1, None)), "MemoryData": (NONE, (2, 2)), "HDF5Output": ((2, 2), NONE),
    "Crop": ((2, 2), ONE), "Filter": ((2, None), (1, None)), "BatchReindex": ((2, 2), ONE),
    "Parameter": (NONE, ONE), "LSTMUnit": ((3, 3), (2, 2)),
    "RNN": _recurrent_counts(1), "LSTM": _recurrent_counts(2),
}
for _t in ("MVN", "Tile", "Reduction", "Embed", "SPP", "Im2col", "PReLU"):
    BLOB_COUNTS[_t] = (ONE, ONE)
for _t, _rule in SHAPE_RULES.items():
    if _rule is _same and _t != "Split":
        BLOB_COUNTS.setdefault(_t, (ONE, ONE))


def blob_counts(layer):
    """Caffe's (bottoms, tops) counts for `layer`, each (min, max); None for a type
    BLOB_COUNTS does not know."""
    counts = BLOB_COUNTS.get(layer.type)
    return counts(layer) if callable(counts) else counts


INT_MAX = 2 ** 31 - 1


def check_counts(layer):
    """Caffe's Layer::CheckBlobCounts for the types BLOB_COUNTS knows (others pass)."""
    counts = blob_counts(layer)
    if counts is None:
        return
    for what, (low, high), given in (("bottom", counts[0], len(layer.bottom)),
                                     ("top", counts[1], len(layer.top))):
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
    (the same name as the bottom at its index). Returns {top: index of the layer making it}.

    One rule beyond Caffe's: layer names are unique. Caffe accepts two layers of one name,
    but a caffemodel's weights go by name (CopyTrainedLayersFrom fills the first of them
    only, the other keeps its fillers) and a snapshot would hold two entries of that name:
    the engine, netinfo and the ONNX export refuse such a net."""
    made, layer_names = {}, {}
    for index, layer in enumerate(net.layer):
        if layer.name in layer_names:
            raise ShapeError(f"layer '{layer.name}' ({layer.type}): a second layer of this name "
                             f"(layers {layer_names[layer.name]} and {index}); layer names must "
                             "be unique, a caffemodel's weights go by name")
        layer_names[layer.name] = index
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
