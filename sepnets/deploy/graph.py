"""Building an ONNX graph: unique value names, constants (initializers), nodes, and the model.

Values are named after what they hold: a Caffe blob keeps its own name where it can (see
convert.py), intermediate values are "<layer>/<what>". Every name is unique in the graph
(ONNX values are assigned once; Caffe's in-place layers reuse a blob name).
"""
import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


class Graph:
    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.initializers = []
        self.inputs = []
        self.outputs = []
        self.taken = set()

    def unique(self, hint):
        """`hint`, or `hint_1`, `hint_2`, ... if that name is taken; reserves it."""
        name, n = hint, 0
        while name in self.taken:
            n += 1
            name = f"{hint}_{n}"
        self.taken.add(name)
        return name

    def constant(self, hint, array):
        """An initializer holding `array` (its dtype as ONNX's: float32, int64, INT2 ...)."""
        tensor = numpy_helper.from_array(np.asarray(array), self.unique(hint))
        self.initializers.append(tensor)
        return tensor.name

    def floats(self, hint, values):
        return self.constant(hint, np.asarray(values, np.float32))

    def ints(self, hint, values):
        """An int64 tensor (shapes, pads, axes, split sizes)."""
        return self.constant(hint, np.asarray(values, np.int64))

    def node(self, op_type, inputs, outputs, name=None, **attrs):
        """A node writing the given output names; returns them. Nodes are named only where a
        name says something (a Caffe layer's own node): names cost bytes in the file."""
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))
        return outputs

    def op(self, op_type, inputs, hint, **attrs):
        """A node with one new output value named after `hint`; returns its name."""
        return self.node(op_type, inputs, [self.unique(hint)], **attrs)[0]

    def add_input(self, name, shape, batch="batch"):
        """A float32 graph input; axis 0 is the dynamic batch (named `batch`)."""
        dims = [batch, *shape[1:]] if shape else []
        self.inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims))

    def add_output(self, name):
        """A float32 graph output: its shape from shape inference (in model()), or the graph
        input's when it is one (an Input top no layer reads, e.g. a label: a Caffe net output
        too), which shape inference leaves without one."""
        given = [value for value in self.inputs if value.name == name]
        self.outputs.append(copy.deepcopy(given[0]) if given else
                            helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))

    def model(self, opset, doc=""):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                  self.initializers, doc_string=doc)
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="sepnets",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        # ONNX's shape inference gives the outputs their shapes (batch axis included); the
        # intermediate values' shapes it finds are not kept (they only make the file larger)
        inferred = shape_inference.infer_shapes(model, strict_mode=True)
        del inferred.graph.value_info[:]
        return inferred
