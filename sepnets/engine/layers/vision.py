"""Spatial layers: Convolution and Deconvolution (group, dilation, non-square), Im2col,
Pooling (MAX/AVE with Caffe's output size and window rules), SPP (a pyramid of Caffe poolings),
LRN (across and within channels)."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from sepnets.caffe import shapes as caffe_shapes
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine.layers.base import Layer, register

FLT_MAX = float(np.finfo(np.float32).max)


@register
class Convolution(Layer):
    TYPE = "Convolution"
    PARAMS = ("convolution_param",)
    FIELDS = {"convolution_param": {
        "num_output", "bias_term", "pad", "kernel_size", "stride", "dilation", "pad_h", "pad_w",
        "kernel_h", "kernel_w", "stride_h", "stride_w", "group", "weight_filler", "bias_filler",
        "engine", "axis", "force_nd_im2col"}}

    def setup(self, shapes):
        p = self.param.convolution_param
        for shape in self.bottom_shapes:
            if len(shape) != 4:
                self.fail(f"the engine convolves 4-axis (N, C, H, W) blobs, not {shape}")
            if shape != self.bottom_shapes[0]:
                self.fail("all bottoms must have the same shape")
        if caffe_shapes.canonical_axis(self.param, p.axis, 4) != 1:
            self.fail("only axis 1 (channels) is supported")
        if len(self.param.top) != len(self.param.bottom):
            self.fail("give one top per bottom")
        kernel, stride, pad, dilation = caffe_shapes.conv_geometry(self.param, 2)
        self.stride = self._useful_stride(kernel, stride, pad, dilation)
        self.pad, self.dilation = tuple(pad), tuple(dilation)
        self.group = p.group
        self.blobs.append(self.make_blob(p.weight_filler, shapes.param_shapes[0], "weight_filler"))
        if p.bias_term:
            self.blobs.append(self.make_blob(p.bias_filler, shapes.param_shapes[1], "bias_filler"))

    def _useful_stride(self, kernel, stride, pad, dilation):
        """The stride, capped where it passes the last window start: the output (one window
        along that axis) is the same, and torch's backward pass takes seconds for strides far
        beyond the input (10^9: 16 s), where Caffe's im2col does not."""
        sizes = self.bottom_shapes[0][2:]
        return tuple(min(s, size + 2 * p - d * (k - 1))
                     for size, k, s, p, d in zip(sizes, kernel, stride, pad, dilation))

    def forward(self, bottoms):
        weight = self.blob(0)
        bias = self.blob(1) if len(self.blobs) > 1 else None
        tops = [self.convolve(x, weight, bias) for x in bottoms]
        if self.ctx.channels_last:
            # a one-channel input cannot say its order, and its output comes back
            # channels-first: reorder it once here rather than in every later layer
            tops = [t.contiguous(memory_format=torch.channels_last) for t in tops]
        return tops

    def convolve(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self.pad, self.dilation, self.group)


@register
class Deconvolution(Convolution):
    """Caffe's DeconvolutionLayer: the transpose of Convolution (its Forward is Convolution's
    backward-data pass), weights (input channels, num_output / group, kh, kw); output size
    stride * (in - 1) + dilation * (kernel - 1) + 1 - 2 * pad."""
    TYPE = "Deconvolution"

    def convolve(self, x, weight, bias):
        return F.conv_transpose2d(x, weight, bias, self.stride, self.pad, 0, self.group,
                                  self.dilation)


@register
class Im2col(Layer):
    """The convolution windows of each position as channels: (N, C * kh * kw, out_h, out_w),
    channel c * kh * kw + i * kw + j holding kernel tap (i, j) of input channel c, as
    Caffe's im2col lays them out."""
    TYPE = "Im2col"
    PARAMS = ("convolution_param",)
    FIELDS = {"convolution_param": {"kernel_size", "kernel_h", "kernel_w", "stride", "stride_h",
                                    "stride_w", "pad", "pad_h", "pad_w", "dilation", "axis",
                                    "force_nd_im2col"}}

    def setup(self, shapes):
        p = self.param.convolution_param
        if len(self.bottom_shapes[0]) != 4 or caffe_shapes.canonical_axis(self.param, p.axis, 4) != 1:
            self.fail(f"the engine unfolds 4-axis (N, C, H, W) blobs along axis 1, not "
                      f"{self.bottom_shapes[0]}")
        self.geometry = caffe_shapes.conv_geometry(self.param, 2)

    def forward(self, bottoms):
        kernel, stride, pad, dilation = self.geometry
        columns = F.unfold(bottoms[0], kernel, dilation, pad, stride)
        return [columns.reshape(bottoms[0].shape[0], *self.top_shapes[0][1:])]


Pool = caffe_pb2.PoolingParameter


def _pool_extents(size, kernel, stride, pad, out):
    """Per output position along one axis: the extent of Caffe's window clipped to the padded
    input (the AVE divisor; Caffe counts the padding)."""
    starts = np.arange(out) * stride - pad
    return np.minimum(starts + kernel, size + pad) - starts


@register
class Pooling(Layer):
    TYPE = "Pooling"
    PARAMS = ("pooling_param",)
    FIELDS = {"pooling_param": {"pool", "pad", "pad_h", "pad_w", "kernel_size", "kernel_h",
                                "kernel_w", "stride", "stride_h", "stride_w", "engine",
                                "global_pooling", "round_mode"}}
    MAX_TOPS = 1  # Caffe's optional second top (the max positions) is not supported

    def setup(self, shapes):
        p = self.param.pooling_param
        if p.pool not in (Pool.MAX, Pool.AVE):
            self.fail("only MAX and AVE pooling are supported: STOCHASTIC pooling is not "
                      "implemented on the CPU in stock Caffe either")
        n, c, h, w = self.bottom_shapes[0]
        if p.global_pooling:
            kernel = (h, w)
        elif p.HasField("kernel_size"):
            kernel = (p.kernel_size, p.kernel_size)
        else:
            kernel = (p.kernel_h, p.kernel_w)
        pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
        stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
        out = tuple(self.top_shapes[0][2:])
        self.kernel, self.stride, self.pad, self.out = kernel, stride, pad, out
        self.max = p.pool == Pool.MAX
        if any((o - 1) * s - pd >= size for size, s, pd, o in zip((h, w), stride, pad, out)):
            # stock Caffe indexes outside its buffers here (it crashes or averages garbage)
            self.fail(f"the last pooling window starts outside the {h}x{w} input (kernel "
                      f"{kernel}, stride {stride}, pad {pad}); stock Caffe cannot run this "
                      "either: change the kernel, stride or pad")
        self.native = all(
            pd <= k // 2 and self._torch_size(size, k, s, pd) == o
            for size, k, s, pd, o in zip((h, w), kernel, stride, pad, out))
        if not self.native:
            self._setup_explicit((h, w))

    @staticmethod
    def _torch_size(size, kernel, stride, pad):
        # torch's ceil_mode size; it drops a last window starting in the padding even without
        # padding, where Caffe keeps it (then the sizes differ and the explicit path runs)
        out = math.ceil((size + 2 * pad - kernel) / stride) + 1
        if (out - 1) * stride >= size + pad:
            out -= 1
        return out

    def _setup_explicit(self, size):
        """Pads the input explicitly (torch pads at most half a kernel); AVE divides by
        Caffe's divisors."""
        self.extra = [max(0, (o - 1) * s + k - (n + 2 * p))
                      for n, k, s, p, o in zip(size, self.kernel, self.stride, self.pad, self.out)]
        extents = [_pool_extents(n, k, s, p, o)
                   for n, k, s, p, o in zip(size, self.kernel, self.stride, self.pad, self.out)]
        if not self.max:
            divisor = np.outer(extents[0], extents[1]).astype(np.float32)
            self.divisor = torch.from_numpy(divisor).to(self.ctx.device)

    def forward(self, bottoms):
        x = bottoms[0]
        if self.native:
            if self.max:
                return [F.max_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True)]
            return [F.avg_pool2d(x, self.kernel, self.stride, self.pad, ceil_mode=True,
                                 count_include_pad=True)]
        (ph, pw), (eh, ew) = self.pad, self.extra
        if self.max:
            # padding never wins a max: Caffe clips its windows to the input
            padded = F.pad(x, (pw, pw + ew, ph, ph + eh), value=-FLT_MAX)
            return [F.max_pool2d(padded, self.kernel, self.stride)]
        padded = F.pad(x, (pw, pw + ew, ph, ph + eh))
        area = self.kernel[0] * self.kernel[1]
        return [F.avg_pool2d(padded, self.kernel, self.stride) * area / self.divisor]


Norm = caffe_pb2.LRNParameter


@register
class LRN(Layer):
    TYPE = "LRN"
    PARAMS = ("lrn_param",)
    FIELDS = {"lrn_param": {"local_size", "alpha", "beta", "norm_region", "k", "engine"}}

    def setup(self, shapes):
        p = self.param.lrn_param
        if p.local_size % 2 != 1:
            self.fail("LRN only supports odd values for local_size")
        if len(self.bottom_shapes[0]) != 4:
            self.fail("input must have 4 axes (num, channels, height, width)")
        self.size = p.local_size
        self.alpha = float(np.float32(p.alpha))
        self.beta = float(np.float32(p.beta))
        self.k = float(np.float32(p.k))
        self.across = p.norm_region == Norm.ACROSS_CHANNELS

    def forward(self, bottoms):
        x = bottoms[0]
        if self.across:
            # x * (k + alpha / size * sum of squares over `size` neighbouring channels)^-beta
            return [F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)]
        # Caffe: x * (1 + alpha * mean of squares over a size x size window, zero padded)^-beta
        pad = (self.size - 1) // 2
        mean_sq = F.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        return [x * (1 + self.alpha * mean_sq).pow(-self.beta)]


@register
class SPP(Layer):
    """Spatial pyramid pooling: level i pools the input into 2^i x 2^i bins with Caffe's
    Pooling (sepnets.caffe.shapes.spp_levels gives each level's kernel, stride and pad); the levels'
    outputs, each flattened per item, are concatenated (one level: its pooling output)."""
    TYPE = "SPP"
    PARAMS = ("spp_param",)
    FIELDS = {"spp_param": {"pyramid_height", "pool", "engine"}}

    def setup(self, shapes):
        if self.param.spp_param.pool == caffe_pb2.SPPParameter.STOCHASTIC:
            self.fail("only MAX and AVE pooling are supported: STOCHASTIC pooling is not "
                      "implemented on the CPU in stock Caffe either")
        bottom = self.bottom_shapes[0]
        self.levels = [Pooling(pooling, [bottom], caffe_shapes.LayerShapes(
            self.name, "Pooling", [], [], [top]), self.ctx)
            for pooling, top in caffe_shapes.spp_levels(self.param, bottom)]

    def forward(self, bottoms):
        pooled = [level.forward(bottoms)[0] for level in self.levels]
        if len(pooled) == 1:
            return pooled
        return [torch.cat([p.reshape(p.shape[0], -1) for p in pooled], dim=1)]
