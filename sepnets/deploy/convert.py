"""A TEST-phase Caffe net and its caffemodel -> an ONNX model (opset OPSET).

The net is filtered as Caffe's Net does for TEST (netstate), its shapes inferred with
Caffe's rules (sepnets.caffe.shapes via nets.analysis), the caffemodel checked against it the
way Caffe's CopyTrainedLayersFrom checks (analysis.check_weights), and each layer converted by
its type's converter (layers.CONVERTERS). Blob names: a Caffe blob's last value (after any
in-place layers) is the ONNX value of the same name, earlier values are "<blob>@<layer>";
the graph's outputs are Caffe's net outputs (blobs no later layer consumes, by name as
Caffe's std::set orders them), its inputs the Input layers' tops with a dynamic batch.
"""
import math
from dataclasses import dataclass

import numpy as np
import onnx

from sepnets.caffe import files, netstate
from sepnets.deploy import sizes, storage
from sepnets.deploy.graph import Graph
from sepnets.deploy.layers import CONVERTERS
from sepnets.errors import UserError
from sepnets.nets import analysis

# The first opset whose DequantizeLinear takes INT2 (ONNX 1.23.2); ONNX Runtime 1.32's CPU
# provider runs every operator used here at it (it has no kernel for DequantizeLinear's next
# version, opset 28's).
OPSET = 25


class Step:
    """One Caffe layer being converted (what a converter in layers.py works with)."""

    def __init__(self, walk, layer, shapes):
        self.walk, self.layer, self.graph = walk, layer, walk.graph
        self.inputs = [walk.values[b] for b in layer.bottom]
        self.in_shapes = [walk.shapes[b] for b in layer.bottom]
        self.out_shapes = shapes.top_shapes
        self.param_shapes = shapes.param_shapes

    def fail(self, problem):
        raise UserError(f"{self.walk.path}: layer '{self.layer.name}' ({self.layer.type}): {problem}")

    def op(self, op_type, inputs, what, **attrs):
        """An intermediate value '<layer>/<what>'."""
        return self.graph.op(op_type, inputs, f"{self.layer.name}/{what}", **attrs)

    def out(self, op_type, inputs, tops=0, **attrs):
        """The node writing the layer's top(s) (an index or a list of indices), named like the
        layer (a layer with several such nodes: '<layer>#<top>')."""
        indices = tops if isinstance(tops, list) else [tops]
        names = [self.walk.top_value(self.layer, i) for i in indices]
        node = self.layer.name if indices[0] == 0 else f"{self.layer.name}#{indices[0]}"
        return self.graph.node(op_type, inputs, names, name=node, **attrs)

    def graph_input(self, index, shape):
        self.graph.add_input(self.walk.top_value(self.layer, index), shape)

    def floats(self, what, value):
        return self.graph.floats(f"{self.layer.name}/{what}", value)

    def ints(self, what, values):
        return self.graph.ints(f"{self.layer.name}/{what}", values)

    def param(self, index, channel_axis=None, shape=None):
        """The ONNX value of parameter blob `index` (see storage.Storage.value)."""
        array = self.walk.blob(self.layer, index)
        return self.walk.storage.value(self.layer.name, index, array, channel_axis, shape)

    def param_array(self, index):
        """Parameter blob `index` (numpy float32), for values computed at export time."""
        return self.walk.blob(self.layer, index)

    def derived(self, what, array):
        """A float32 value computed from the layer's blobs, stored as '<layer>/<what>'."""
        return self.walk.storage.derived(f"{self.layer.name}/{what}", array)


class Walk:
    """The layers in order: ONNX value of each Caffe blob now, its shape, the weights."""

    def __init__(self, path, graph, weights, store, net):
        self.path, self.graph, self.weights, self.storage = path, graph, weights, store
        self.values, self.shapes = {}, {}
        self.last_writer = {top: layer.name for layer in net.layer for top in layer.top}
        self.inputs = {top for layer in net.layer if layer.type == "Input" for top in layer.top}
        graph.taken.update(self.last_writer)  # Caffe's names first, for the values that keep them

    def blob(self, layer, index):
        return self.weights[layer.name][index]

    def top_value(self, layer, index):
        """The ONNX name of top `index`: the blob's own for an input and for the blob's last
        value, else '<blob>@<layer>'."""
        blob = layer.top[index]
        if layer.type == "Input" or (self.last_writer[blob] == layer.name and blob not in self.inputs):
            name = blob
        else:
            name = self.graph.unique(f"{blob}@{layer.name}")
        self.values[blob] = name
        return name

    def run(self, net, layer_shapes):
        available = []
        for layer, shapes in zip(net.layer, layer_shapes):
            step = Step(self, layer, shapes)
            CONVERTERS[layer.type](step)
            for top, shape in zip(layer.top, shapes.top_shapes):
                self.shapes[top] = shape
            available = [b for b in available if b not in layer.bottom]
            available += [t for t in layer.top if t not in available]
        for blob in sorted(available):
            self.graph.add_output(self.values[blob])


def read_net(path):
    """The TEST phase of the net at `path`; one line naming the first layer not exported."""
    net = netstate.filter_net(files.read_net(path), "TEST")
    for layer in net.layer:
        if layer.type not in CONVERTERS:
            hint = (" (export the deploy net: an Input layer in place of the data layers, no "
                    "losses or accuracies)" if layer.type in ("Data", "ImageData", "HDF5Data")
                    or "Loss" in layer.type or layer.type == "Accuracy" else "")
            raise UserError(f"{path}: layer '{layer.name}' ({layer.type}): this layer type is not "
                            f"exported to ONNX{hint}; exported types: {', '.join(sorted(CONVERTERS))}")
    return net


def read_weights(info, path):
    """{layer: [float32 arrays in the net's blob shapes]}; UserError where Caffe would fail to
    load them, or a layer with parameters has none (Caffe would keep its random fillers)."""
    model = files.read_model(path)
    errors, _ = analysis.check_weights(info, model)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UserError(f"{path} does not fit {info.path}: {errors[0]}{more}")
    weights = {}
    for layer in info.layers:
        if not layer.param_shapes:
            continue
        if layer.name not in model.blobs:
            raise UserError(f"{path}: no weights for layer '{layer.name}' of {info.path}")
        weights[layer.name] = [np.asarray(b, np.float32).reshape(shape)
                               for b, shape in zip(model.blobs[layer.name], layer.param_shapes)]
    return weights


def find_patterns(net, weights):
    """{layer: per-filter scales} of the Convolutions whose weights are patterns."""
    found = {}
    for layer in net.layer:
        if layer.type == "Convolution" and layer.name in weights:
            scales = storage.pattern_scales(weights[layer.name][0])
            if scales is not None:
                found[layer.name] = scales
    return found


@dataclass
class Export:
    model: onnx.ModelProto
    patterns: dict            # layer -> per-filter scales
    stored: dict              # storage kind -> bytes of tensor data
    info: analysis.NetInfo    # the net (TEST phase)
    bq: bool

    def pattern_weights(self):
        """[weights of each pattern layer], in net order."""
        return [math.prod(layer.param_shapes[0]) for layer in self.info.layers
                if layer.name in self.patterns]


def convert(net_path, weights_path, bq=False):
    """Export (the ONNX model and what it stores) of a net prototxt and its caffemodel."""
    net = read_net(net_path)
    info = analysis.analyze(net_path, "TEST")
    weights = read_weights(info, weights_path)
    patterns = find_patterns(net, weights)
    graph = Graph(net.name or "net")
    store = storage.Storage(graph, patterns, bq)
    Walk(str(net_path), graph, weights, store, net).run(net, info.layers)
    store.bytes[storage.CONSTANT] = sum(len(t.raw_data) for t in graph.initializers) - sum(
        store.bytes[k] for k in storage.KINDS if k != storage.CONSTANT)
    model = graph.model(OPSET, doc=f"{net_path} with {weights_path}, exported by sepnets "
                                   f"({'--bq' if bq else 'patterns low-bit, other blobs float32'})")
    onnx.checker.check_model(model, full_check=True)
    return Export(model, patterns, dict(store.bytes), info, bq)


def export(net_path, weights_path, output, bq=False):
    """Writes the ONNX file (atomically; never over an input); returns sizes.SizeReport."""
    result = convert(net_path, weights_path, bq)
    data = result.model.SerializeToString()
    files.atomic_write(output, data, inputs=[net_path, weights_path])
    return sizes.report(result, output, len(data))
