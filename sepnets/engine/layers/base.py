"""The layer interface and registry.

A layer is built from its LayerParameter and the shapes sepnets.caffe.shapes inferred for it (the
same Reshape rules Caffe uses), holds its parameter blobs as torch tensors in Caffe's order
(`blobs`, e.g. [weight, bias]) and maps bottom tensors to top tensors in `forward`; torch's
autograd is its Backward.

Parameters are checked, never silently ignored: every field set in the layer's own parameter
message must be one the implementation reads (`FIELDS`), or building stops with an error
naming the layer. Another layer type's parameter message (e.g. image_data_param on a Data
layer, which stock Caffe ignores) is ignored with a warning.

Where Caffe's Backward is not the derivative of its Forward, a layer says so: bottoms Caffe
never back-propagates into (labels, sequence indicators, indices: `no_gradient_bottoms`) are
cut from the graph by the Net, a net whose force_backward would make stock Caffe stop in the
layer's Backward is refused (`force_backward_failure`), and a gradient Caffe computes by its
own formula is attached with `given_gradient` or a torch.autograd.Function.
"""
from dataclasses import dataclass

import torch

from sepnets.caffe import glog, shapes
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import fillers
from sepnets.errors import UserError

REGISTRY = {}

# Caffe 1.0 layer types the engine refuses on purpose, with the reason.
REFUSED = {
    "Python": "the engine never imports code a prototxt names (python_param.module); write "
              "the layer's computation as Caffe layers, or run the net with stock Caffe",
    "WindowData": "R-CNN's window-file layer samples foreground and background windows at "
                  "random, so no run of it can be checked against stock Caffe; the engine does "
                  "not implement it (convert the windows to an LMDB or an ImageData list)",
}

# LayerParameter fields every layer may use; the Net reads them (param specs, loss weights...)
COMMON_FIELDS = {"name", "type", "bottom", "top", "phase", "loss_weight", "param", "blobs",
                 "propagate_down", "include", "exclude"}


class LayerError(UserError):
    """A layer the engine cannot build as Caffe would (bad or unsupported parameters)."""


@dataclass
class BuildContext:
    """What layers need from the net being built."""
    device: torch.device
    generator: torch.Generator  # fillers and Dropout on the CPU (CUDA uses its own generator)
    seed: int = -1  # solver random_seed (-1: none), for the Data layer's crop/mirror choices
    channels_last: bool = False  # keep 4-axis data in channels-last memory order
    force_backward: bool = False  # the net's force_backward


def register(cls):
    REGISTRY[cls.TYPE] = cls
    return cls


def _set_fields(message):
    return [f.name for f, _ in message.ListFields()]


class Layer:
    TYPE = None
    PARAMS = ()      # the LayerParameter fields holding this layer's own parameters
    FIELDS = {}      # PARAMS field -> set of its fields the implementation reads
    # Caffe's bottom and top counts are sepnets.caffe.shapes.BLOB_COUNTS (the one table); a
    # layer that implements fewer tops than Caffe allows says how many
    MAX_TOPS = None
    IS_LOSS = False  # loss layers weigh their first top 1 by default
    MAKES_DATA = False  # a data layer: its 4-axis tops enter channels-last where the net wants it
    NO_GRADIENT = ()  # bottoms Caffe never back-propagates into (its AllowForceBackward false)
    # why stock Caffe stops when force_backward makes this layer back-propagate into a bottom
    # its Backward refuses (a CHECK or NOT_IMPLEMENTED there); None: it does not
    FORCE_BACKWARD_FAILS = None

    def __init__(self, param, bottom_shapes, shapes, ctx):
        # a copy: setup may add to it as Caffe's LayerSetUp does (BatchNorm's param specs),
        # and snapshots write it back
        self.param = caffe_pb2.LayerParameter()
        self.param.CopyFrom(param)
        self.name = param.name
        self.train = param.phase == caffe_pb2.TRAIN
        self.ctx = ctx
        self.blobs = []
        self.bottom_shapes = [tuple(s) for s in bottom_shapes]
        self.top_shapes = list(shapes.top_shapes) if shapes is not None else []
        self._check_fields()
        self._check_counts()
        self.setup(shapes)
        # the shapes this layer computes with (a shared blob may be stored in another shape)
        self.blob_shapes = [tuple(b.shape) for b in self.blobs]

    # ---------------------------------------------------------------- to override
    def setup(self, shapes):
        """Checks parameters and creates `blobs` (fill or zeros) on the device."""

    def forward(self, bottoms):
        raise NotImplementedError

    def no_gradient_bottoms(self):
        return self.NO_GRADIENT

    def force_backward_failure(self):
        return self.FORCE_BACKWARD_FAILS

    @classmethod
    def source_shapes(cls, param):
        """Top shapes of a data layer whose shapes come from its source (sepnets.caffe.shapes'
        DATA_LAYERS): the engine reads them as Caffe's DataLayerSetUp does."""
        raise LayerError(f"layer '{param.name}': the shapes of {param.type} layers come from "
                         "their data source")

    # ---------------------------------------------------------------- helpers
    def fail(self, problem):
        raise LayerError(f"layer '{self.name}' ({self.TYPE}): {problem}")

    def check_in_place(self):
        """Caffe's CHECK_NE(top[0], bottom[0]) for layers that cannot run in place."""
        if self.param.top and self.param.bottom and self.param.top[0] == self.param.bottom[0]:
            self.fail(f"{self.TYPE} Layer does not allow in-place computation.")

    def _check_fields(self):
        own = set(self.PARAMS)
        for field in _set_fields(self.param):
            if field in COMMON_FIELDS or field in own:
                continue
            if field.endswith("_param"):
                glog.warning(None, f"layer '{self.name}' ({self.TYPE}): {field} "
                             f"belongs to another layer type; ignored (as in Caffe)")
                continue
            self.fail(f"field '{field}' is not supported by the engine")
        for field in self.PARAMS:
            allowed = self.FIELDS.get(field, set())
            for name in _set_fields(getattr(self.param, field)):
                if name not in allowed:
                    self.fail(f"{field}.{name} is not supported by the engine")

    def _check_counts(self):
        """Caffe's Layer::CheckBlobCounts (shapes.check_counts, which shape inference applies
        too), then the engine's own limit on tops."""
        shapes.check_counts(self.param)
        if self.MAX_TOPS is not None and len(self.param.top) > self.MAX_TOPS:
            self.fail(f"takes {self.MAX_TOPS} top blob(s), {len(self.param.top)} given")

    def make_blob(self, filler_param, shape, what):
        """A new parameter blob filled by a Caffe filler, on the device."""
        data = fillers.fill(filler_param, shape, self.ctx.generator,
                            where=f"layer '{self.name}' {what}")
        return data.to(self.ctx.device)

    def zeros(self, shape):
        return torch.zeros(tuple(shape), dtype=torch.float32, device=self.ctx.device)

    def blob(self, index):
        """Parameter blob `index` in this layer's shape (a shared blob may be stored in its
        owner's shape when shared with share_mode PERMISSIVE)."""
        blob = self.blobs[index]
        shape = self.blob_shapes[index]
        return blob if tuple(blob.shape) == shape else blob.view(shape)


def check_type(param):
    if param.type in REFUSED:
        raise LayerError(f"layer '{param.name}': layer type '{param.type}' is refused: "
                         f"{REFUSED[param.type]}")
    cls = REGISTRY.get(param.type)
    if cls is None:
        raise LayerError(f"layer '{param.name}': layer type '{param.type}' is not supported by "
                         f"the engine (supported: {', '.join(sorted(REGISTRY))})")
    return cls


def create(param, bottom_shapes, shapes, ctx):
    return check_type(param)(param, bottom_shapes, shapes, ctx)


def source_shapes(param):
    """sepnets.caffe.shapes' data_shapes callback: the top shapes of a data layer, read from its
    source by the layer class that implements it."""
    return check_type(param).source_shapes(param)


class _GivenGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value, x, gradient):
        ctx.save_for_backward(gradient)
        return value.clone()

    @staticmethod
    def backward(ctx, upstream):
        (gradient,) = ctx.saved_tensors
        return upstream, upstream * gradient, None


def given_gradient(value, pairs):
    """`value` (a scalar computed without the graph) whose gradient with respect to each x in
    `pairs` [(x, gradient)] is `gradient` times the incoming gradient: a loss whose Caffe
    Backward is its own formula rather than the derivative of its Forward."""
    out = value.detach()
    for x, gradient in pairs:
        out = _GivenGradient.apply(out, x, gradient.detach())
    return out
