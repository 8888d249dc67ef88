"""BatchNorm with Caffe's three blobs (mean sum, variance sum, moving-average factor), Scale,
Bias, and MVN (mean-variance normalization per item or per item and channel)."""
import numpy as np
import torch
import torch.nn.functional as F

from sepnets.caffe.shapes import canonical_axis, legacy_axes
from sepnets.engine import fillers
from sepnets.engine.layers.base import Layer, register


@register
class BatchNorm(Layer):
    """Caffe's BatchNorm: no learned scale/shift (a Scale layer follows). Blobs: running sums
    of batch means and of bias-corrected batch variances, and their weight
    (factor = factor * moving_average_fraction + 1); the statistics are sum / factor.
    TRAIN (unless use_global_stats) normalizes with the batch's mean and biased variance and
    updates the blobs; TEST (or use_global_stats) uses the stored statistics."""
    TYPE = "BatchNorm"
    PARAMS = ("batch_norm_param",)
    FIELDS = {"batch_norm_param": {"use_global_stats", "moving_average_fraction", "eps"}}

    def setup(self, shapes):
        p = self.param.batch_norm_param
        self.global_stats = p.use_global_stats if p.HasField("use_global_stats") else not self.train
        self.fraction = float(np.float32(p.moving_average_fraction))
        self.eps = float(np.float32(p.eps))
        if not self.eps > 0:
            # Caffe divides by sqrt(variance + eps) unchecked: NaN or inf where that is <= 0
            self.fail(f"eps {p.eps:g} must be positive (Caffe would divide by sqrt(variance + "
                      "eps) and make NaN or inf)")
        shape = self.bottom_shapes[0]
        if len(shape) < 2:
            self.fail("the engine normalizes blobs with a channel axis (at least 2 axes)")
        for blob_shape in shapes.param_shapes:
            self.blobs.append(self.zeros(blob_shape))
        # statistics are never learned: Caffe adds `param { lr_mult: 0 }` for each blob
        for i in range(len(self.blobs)):
            if len(self.param.param) == i:
                self.param.param.add(lr_mult=0)
            elif self.param.param[i].lr_mult != 0:
                self.fail("cannot configure batch normalization statistics as layer parameters "
                          "(lr_mult must be 0)")
        # values per channel in a batch (Caffe's m, for the variance's bias correction)
        self.per_channel = int(np.prod(shape)) // shape[1]

    def forward(self, bottoms):
        x = bottoms[0]
        if self.per_channel == 1 and not self.global_stats:
            return [self._single_value(x)]
        return [self.normalize(x)]

    def normalize(self, x, weight=None, bias=None):
        """The normalized x, times weight plus bias when given (a Scale layer fused in)."""
        mean_sum, var_sum, factor = self.blob(0), self.blob(1), self.blob(2)
        if self.global_stats:
            with torch.no_grad():
                f = factor[0]
                scale = torch.where(f == 0, torch.zeros_like(f), 1 / f)
                mean, var = mean_sum * scale, var_sum * scale
            return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)
        # momentum 1 into zeroed buffers hands back the batch mean and the unbiased
        # (m / (m - 1)) variance, the values Caffe adds to its running sums
        batch_mean = torch.zeros_like(mean_sum)
        batch_var = torch.zeros_like(var_sum)
        y = F.batch_norm(x, batch_mean, batch_var, weight, bias, True, 1.0, self.eps)
        with torch.no_grad():
            factor.mul_(self.fraction).add_(1)
            mean_sum.mul_(self.fraction).add_(batch_mean)
            var_sum.mul_(self.fraction).add_(batch_var)
        return y

    def _single_value(self, x):
        """One value per channel: Caffe normalizes to 0 and adds a variance of 0 (m = 1)."""
        dims = [d for d in range(x.dim()) if d != 1]
        mean = x.mean(dim=dims, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dim=dims, keepdim=True)
        with torch.no_grad():
            self.blob(2).mul_(self.fraction).add_(1)
            self.blob(0).mul_(self.fraction).add_(mean.flatten())
            self.blob(1).mul_(self.fraction).add_(var.flatten())
        return centered / torch.sqrt(var + self.eps)


def _broadcast_shape(ndim, axis, param_shape):
    return (1,) * axis + tuple(param_shape) + (1,) * (ndim - axis - len(param_shape))


class Affine(Layer):
    """Scale and Bias: a blob (learned, or the second bottom) applied along axes
    [axis, axis + num_axes) of the first bottom, broadcast over the rest."""

    def _axis(self, p, param_shape):
        ndim = len(self.bottom_shapes[0])
        axis = 0 if len(param_shape) == 0 else canonical_axis(self.param, p.axis, ndim)
        self.view = _broadcast_shape(ndim, axis, param_shape)


@register
class Scale(Affine):
    TYPE = "Scale"
    PARAMS = ("scale_param",)
    FIELDS = {"scale_param": {"axis", "num_axes", "filler", "bias_term", "bias_filler"}}

    def setup(self, shapes):
        p = self.param.scale_param
        learned = len(self.param.bottom) == 1
        if learned:
            scale_shape = shapes.param_shapes[0]
            # Caffe's default scale is the identity: constant 1
            filler = p.filler if p.HasField("filler") else fillers.constant(1.0)
            self.blobs.append(self.make_blob(filler, scale_shape, "filler"))
        else:
            scale_shape = self.bottom_shapes[1]
        self._axis(p, scale_shape)
        self.has_bias = p.bias_term
        if p.bias_term:
            self.blobs.append(self.make_blob(p.bias_filler, scale_shape, "bias_filler"))

    def forward(self, bottoms):
        x = bottoms[0]
        learned = len(bottoms) == 1
        scale = self.blob(0) if learned else bottoms[1]
        out = x * scale.reshape(self.view)
        if self.has_bias:
            out = out + self.blob(len(self.blobs) - 1).reshape(self.view)
        return [out]


@register
class Bias(Affine):
    TYPE = "Bias"
    PARAMS = ("bias_param",)
    FIELDS = {"bias_param": {"axis", "num_axes", "filler"}}

    def setup(self, shapes):
        p = self.param.bias_param
        if len(self.param.bottom) == 1:
            bias_shape = shapes.param_shapes[0]
            self.blobs.append(self.make_blob(p.filler, bias_shape, "filler"))
        else:
            bias_shape = self.bottom_shapes[1]
        self._axis(p, bias_shape)

    def forward(self, bottoms):
        bias = self.blob(0) if len(bottoms) == 1 else bottoms[1]
        return [bottoms[0] + bias.reshape(self.view)]


class _MeanVarianceNorm(torch.autograd.Function):
    """mvn_layer.cpp on rows (one per item, or per item and channel): y = (x - mean) /
    (std + eps) with the biased std; its Backward is (dy - mean(dy) - y mean(y dy)) /
    (std + eps), which leaves eps out of the second term where the derivative keeps it."""

    @staticmethod
    def forward(ctx, rows, eps):
        centered = rows - rows.mean(dim=1, keepdim=True)
        std = torch.sqrt((centered * centered).mean(dim=1, keepdim=True)) + eps
        y = centered / std
        ctx.save_for_backward(y, std)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, std = ctx.saved_tensors
        inner = (y * dy).mean(dim=1, keepdim=True)
        return (dy - dy.mean(dim=1, keepdim=True) - y * inner) / std, None


@register
class MVN(Layer):
    """Subtracts the mean of each item (across_channels) or of each item's channel, and with
    normalize_variance (default) divides by the standard deviation plus eps. Works on Caffe's
    num/channels/height/width view: at most 4 axes, and the top is 4-axis."""
    TYPE = "MVN"
    PARAMS = ("mvn_param",)
    FIELDS = {"mvn_param": {"normalize_variance", "across_channels", "eps"}}

    def setup(self, shapes):
        p = self.param.mvn_param
        legacy_axes(self.param, self.bottom_shapes[0])  # at most 4 axes
        self.across_channels = p.across_channels
        self.normalize_variance = p.normalize_variance
        self.eps = float(np.float32(p.eps))

    def forward(self, bottoms):
        x = bottoms[0]
        shape = legacy_axes(self.param, x.shape)
        rows = x.reshape(shape[0] if self.across_channels else shape[0] * shape[1], -1)
        if self.normalize_variance:
            out = _MeanVarianceNorm.apply(rows, self.eps)
        else:
            out = rows - rows.mean(dim=1, keepdim=True)
        return [out.reshape(shape)]
