"""Structural layers: InnerProduct, Flatten, Reshape, Concat, Slice, Split, Silence, Eltwise."""
import numpy as np
import torch

from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import canonical_axis
from sepnets.engine.layers.base import Layer, register


@register
class InnerProduct(Layer):
    TYPE = "InnerProduct"
    PARAMS = ("inner_product_param",)
    FIELDS = {"inner_product_param": {"num_output", "bias_term", "weight_filler", "bias_filler",
                                      "axis", "transpose"}}
    NUM_BOTTOMS = 1
    NUM_TOPS = 1

    def setup(self, shapes):
        p = self.param.inner_product_param
        self.axis = canonical_axis(self.param, p.axis, len(self.bottom_shapes[0]))
        self.transpose = p.transpose
        self.blobs.append(self.make_blob(p.weight_filler, shapes.param_shapes[0], "weight_filler"))
        if p.bias_term:
            self.blobs.append(self.make_blob(p.bias_filler, shapes.param_shapes[1], "bias_filler"))

    def forward(self, bottoms):
        x = bottoms[0]
        rows = x.reshape(int(np.prod(x.shape[:self.axis], dtype=np.int64)),
                         int(np.prod(x.shape[self.axis:], dtype=np.int64)))
        weight = self.blob(0)
        out = rows @ weight if self.transpose else rows @ weight.t()
        if len(self.blobs) > 1:
            out = out + self.blob(1)
        return [out.view(*x.shape[:self.axis], out.shape[1])]


class Restructure(Layer):
    """Flatten and Reshape: the top shape sepnets.caffe.shapes computed with Caffe's rules."""
    NUM_BOTTOMS = 1
    NUM_TOPS = 1

    def forward(self, bottoms):
        return [bottoms[0].reshape(self.top_shapes[0])]


@register
class Flatten(Restructure):
    TYPE = "Flatten"
    PARAMS = ("flatten_param",)
    FIELDS = {"flatten_param": {"axis", "end_axis"}}


@register
class Reshape(Restructure):
    TYPE = "Reshape"
    PARAMS = ("reshape_param",)
    FIELDS = {"reshape_param": {"shape", "axis", "num_axes"}}


@register
class Concat(Layer):
    TYPE = "Concat"
    PARAMS = ("concat_param",)
    FIELDS = {"concat_param": {"axis", "concat_dim"}}
    NUM_BOTTOMS = (1, None)
    NUM_TOPS = 1

    def setup(self, shapes):
        p = self.param.concat_param
        axis = p.concat_dim if p.HasField("concat_dim") else p.axis
        self.axis = canonical_axis(self.param, axis, len(self.bottom_shapes[0]))

    def forward(self, bottoms):
        if len(bottoms) == 1:
            return [bottoms[0]]
        return [torch.cat(bottoms, dim=self.axis)]


@register
class Slice(Layer):
    TYPE = "Slice"
    PARAMS = ("slice_param",)
    FIELDS = {"slice_param": {"axis", "slice_dim", "slice_point"}}
    NUM_BOTTOMS = 1
    NUM_TOPS = (1, None)

    def setup(self, shapes):
        p = self.param.slice_param
        axis = p.slice_dim if p.HasField("slice_dim") else p.axis
        self.axis = canonical_axis(self.param, axis, len(self.bottom_shapes[0]))
        self.sizes = [shape[self.axis] for shape in self.top_shapes]

    def forward(self, bottoms):
        if len(self.sizes) == 1:
            return [bottoms[0]]
        return list(torch.split(bottoms[0], self.sizes, dim=self.axis))


@register
class Split(Layer):
    """Caffe inserts Split layers where a blob feeds several layers, so their gradients add
    up; autograd adds them too, so an explicit Split just hands its bottom to every top."""
    TYPE = "Split"
    NUM_BOTTOMS = 1
    NUM_TOPS = (1, None)

    def forward(self, bottoms):
        return [bottoms[0]] * len(self.param.top)


@register
class Silence(Layer):
    TYPE = "Silence"
    NUM_BOTTOMS = (1, None)
    NUM_TOPS = 0

    def forward(self, bottoms):
        return []


Op = caffe_pb2.EltwiseParameter


@register
class Eltwise(Layer):
    """SUM (with coeff), PROD and MAX. MAX routes each gradient to the bottom Caffe picks:
    among the first two the second wins ties, later bottoms must be strictly larger."""
    TYPE = "Eltwise"
    PARAMS = ("eltwise_param",)
    FIELDS = {"eltwise_param": {"operation", "coeff", "stable_prod_grad"}}
    NUM_BOTTOMS = (2, None)
    NUM_TOPS = 1

    def setup(self, shapes):
        p = self.param.eltwise_param
        self.op = p.operation
        coeffs = list(p.coeff)
        if coeffs and self.op != Op.SUM:
            self.fail("coeff is only for the SUM operation")
        if coeffs and len(coeffs) != len(self.param.bottom):
            self.fail(f"give one coeff per bottom ({len(self.param.bottom)}), not {len(coeffs)}")
        self.coeffs = [float(np.float32(c)) for c in coeffs] or [1.0] * len(self.param.bottom)
        for shape in self.bottom_shapes[1:]:
            if shape != self.bottom_shapes[0]:
                self.fail(f"all bottoms must have the same shape: {self.bottom_shapes[0]} vs {shape}")

    def forward(self, bottoms):
        if self.op == Op.SUM:
            out = None
            for x, c in zip(bottoms, self.coeffs):
                term = x if c == 1.0 else x * c
                out = term if out is None else out + term
            return [out]
        if self.op == Op.PROD:
            out = bottoms[0]
            for x in bottoms[1:]:
                out = out * x
            return [out]
        return [self._max(bottoms)]

    @staticmethod
    def _max(bottoms):
        with torch.no_grad():
            first_wins = bottoms[0] > bottoms[1]
            best = torch.where(first_wins, bottoms[0], bottoms[1])
            choice = (~first_wins).to(torch.int8)
            for i, x in enumerate(bottoms[2:], start=2):
                better = x > best
                best = torch.where(better, x, best)
                choice = choice.masked_fill(better, i)
        out = bottoms[0]
        for i, x in enumerate(bottoms[1:], start=1):
            out = torch.where(choice == i, x, out)
        return out
