"""Structural layers: InnerProduct, Embed, Flatten, Reshape, Concat, Slice, Split, Silence,
Eltwise, Crop, Tile, Reduction, ArgMax, Filter, BatchReindex and Parameter."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from sepnets.caffe.proto import caffe_pb2
from sepnets.caffe.shapes import canonical_axis, crop_geometry
from sepnets.engine.layers.base import Layer, register


@register
class InnerProduct(Layer):
    TYPE = "InnerProduct"
    PARAMS = ("inner_product_param",)
    FIELDS = {"inner_product_param": {"num_output", "bias_term", "weight_filler", "bias_filler",
                                      "axis", "transpose"}}

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

    def forward(self, bottoms):
        return [bottoms[0]] * len(self.param.top)


@register
class Silence(Layer):
    TYPE = "Silence"

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


def _indices(layer, values, bound, what):
    """Float blob values used as indices: truncated toward zero as C++'s static_cast<int>
    does, refused outside [0, bound) (stock Caffe reads out of bounds, or stops)."""
    indices = values.detach().long()
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= bound):
        bad = int(indices.min()) if int(indices.min()) < 0 else int(indices.max())
        layer.fail(f"{what} {bad} outside [0, {bound})")
    return indices


@register
class Embed(Layer):
    """Row x of the (input_dim, num_output) weight for each input value x (plus bias): the
    top is the bottom's shape plus num_output. Caffe back-propagates into the weights only."""
    TYPE = "Embed"
    PARAMS = ("embed_param",)
    FIELDS = {"embed_param": {"num_output", "input_dim", "bias_term", "weight_filler",
                              "bias_filler"}}
    NO_GRADIENT = (0,)
    FORCE_BACKWARD_FAILS = "Can't backpropagate to EmbedLayer input."

    def setup(self, shapes):
        p = self.param.embed_param
        self.blobs.append(self.make_blob(p.weight_filler, shapes.param_shapes[0], "weight_filler"))
        if p.bias_term:
            self.blobs.append(self.make_blob(p.bias_filler, shapes.param_shapes[1], "bias_filler"))

    def forward(self, bottoms):
        weight = self.blob(0)
        out = F.embedding(_indices(self, bottoms[0], weight.shape[0], "input"), weight)
        return [out + self.blob(1) if len(self.blobs) > 1 else out]


@register
class Crop(Layer):
    """The first bottom cut to the second's sizes along the axes from crop_param.axis on
    (default 2: the spatial axes), starting at crop_param.offset (once for all those axes,
    or once per axis; default 0). The second bottom gives only its shape."""
    TYPE = "Crop"
    PARAMS = ("crop_param",)
    FIELDS = {"crop_param": {"axis", "offset"}}

    def setup(self, shapes):
        top, offsets = crop_geometry(self.param, *self.bottom_shapes)
        self.window = tuple(slice(o, o + size) for o, size in zip(offsets, top))

    def forward(self, bottoms):
        return [bottoms[0][self.window]]


@register
class Tile(Layer):
    """The bottom's block from tile_param.axis on, repeated `tiles` times along that axis
    ([x, x, ...], not each value repeated)."""
    TYPE = "Tile"
    PARAMS = ("tile_param",)
    FIELDS = {"tile_param": {"axis", "tiles"}}

    def setup(self, shapes):
        p = self.param.tile_param
        axis = canonical_axis(self.param, p.axis, len(self.bottom_shapes[0]))
        self.repeats = [p.tiles if i == axis else 1 for i in range(len(self.bottom_shapes[0]))]

    def forward(self, bottoms):
        return [bottoms[0].repeat(*self.repeats)]


Reduce = caffe_pb2.ReductionParameter


@register
class Reduction(Layer):
    """SUM, ASUM (of |x|), SUMSQ or MEAN over all axes from reduction_param.axis on (the top
    keeps the axes before it; axis 0 gives one value), times coeff."""
    TYPE = "Reduction"
    PARAMS = ("reduction_param",)
    FIELDS = {"reduction_param": {"operation", "axis", "coeff"}}

    def setup(self, shapes):
        p = self.param.reduction_param
        shape = self.bottom_shapes[0]
        self.axis = canonical_axis(self.param, p.axis, len(shape))
        self.op = p.operation
        dim = math.prod(shape[self.axis:])
        coeff = np.float32(p.coeff)
        self.coeff = float(coeff / np.float32(dim) if self.op == Reduce.MEAN else coeff)

    def forward(self, bottoms):
        x = bottoms[0]
        rows = x.reshape(math.prod(x.shape[:self.axis]), -1)
        if self.op == Reduce.ASUM:
            rows = rows.abs()
        elif self.op == Reduce.SUMSQ:
            rows = rows * rows
        out = rows.sum(dim=1)
        if self.coeff != 1:
            out = out * self.coeff
        return [out.reshape(x.shape[:self.axis])]


def _descending(x, dim):
    """(values, indices) sorted in decreasing order along `dim`, ties broken toward the higher
    index, as Caffe's partial_sort of (value, index) pairs with std::greater does."""
    flipped = x.flip(dim)
    values, order = torch.sort(flipped, dim=dim, descending=True, stable=True)
    return values, x.shape[dim] - 1 - order


@register
class ArgMax(Layer):
    """The indices of the top_k largest values per item (over all its values), or along
    argmax_param.axis; out_max_val adds the values (per item: (N, 2, top_k), indices then
    values), or along an axis gives the values instead. Caffe has no Backward for it."""
    TYPE = "ArgMax"
    PARAMS = ("argmax_param",)
    FIELDS = {"argmax_param": {"out_max_val", "top_k", "axis"}}
    FORCE_BACKWARD_FAILS = "ArgMaxLayer's Backward is not implemented"

    def setup(self, shapes):
        p = self.param.argmax_param
        self.top_k, self.out_max_val = p.top_k, p.out_max_val
        self.axis = (canonical_axis(self.param, p.axis, len(self.bottom_shapes[0]))
                     if p.HasField("axis") else None)

    def forward(self, bottoms):
        x = bottoms[0].detach()
        k = self.top_k
        if self.axis is not None:
            values, indices = _descending(x, self.axis)
            picked = (values if self.out_max_val else indices.to(torch.float32))
            return [picked.narrow(self.axis, 0, k)]
        values, indices = _descending(x.reshape(x.shape[0], -1), 1)
        out = indices[:, :k].to(torch.float32)
        if self.out_max_val:
            out = torch.cat([out, values[:, :k]], dim=1)
        return [out.reshape((x.shape[0],) + tuple(self.top_shapes[0][1:]))]


@register
class Filter(Layer):
    """The items (along axis 0) of every bottom but the last whose value in the last, the
    selector (N x 1 x ...), is nonzero; gradients go back to the selected items, zero
    elsewhere. The selector gets no gradient."""
    TYPE = "Filter"
    FORCE_BACKWARD_FAILS = "FilterLayer cannot backpropagate to filter index inputs"

    def no_gradient_bottoms(self):
        return (len(self.param.bottom) - 1,)

    def forward(self, bottoms):
        selected = torch.nonzero(bottoms[-1].detach().reshape(-1), as_tuple=True)[0]
        return [x.index_select(0, selected) for x in bottoms[:-1]]


@register
class BatchReindex(Layer):
    """Items of the first bottom in the order the second (a 1-axis blob of indices) lists
    them, repeats allowed; gradients are summed back into the items."""
    TYPE = "BatchReindex"
    NO_GRADIENT = (1,)
    FORCE_BACKWARD_FAILS = "Cannot backprop to index."

    def forward(self, bottoms):
        x = bottoms[0]
        return [x.index_select(0, _indices(self, bottoms[1], x.shape[0], "index"))]


@register
class Parameter(Layer):
    """A learnable blob of parameter_param.shape (zeros until trained or loaded) as its top:
    the top's gradient is the blob's."""
    TYPE = "Parameter"
    PARAMS = ("parameter_param",)
    FIELDS = {"parameter_param": {"shape"}}

    def setup(self, shapes):
        self.blobs.append(self.zeros(shapes.param_shapes[0]))

    def forward(self, bottoms):
        return [self.blob(0)]
