"""Deployment: a TEST-phase Caffe net and its caffemodel as an ONNX graph that ONNX Runtime
runs with Caffe's semantics, with pattern layers stored low-bit.

    from sepnets import deploy
    result = deploy.export("deploy.prototxt", "x.caffemodel", "x.onnx", bq=False)

    graph       building the ONNX graph: unique value names, constants, nodes, the model
    layers      one converter per Caffe layer type (the registry CONVERTERS), each citing the
                Caffe layer source whose TEST forward it reproduces
    storage     how each parameter blob is stored: float32, the pattern layers (found in the
                weights) as INT2 signs with a scale per filter, --bq weights 8-bit (pack's rule)
    convert     the walk over the net: the TEST phase, shapes, blob names, weights, the model
    sizes       the file's size next to netinfo's predicted R/B/BQ sizes
    evaluate    ONNX Runtime's accuracy on test batches; the demo's export step

May import sepnets.caffe (files, proto, netstate, shapes, wire), sepnets.nets (analysis: the
net's shapes, its weights checked, the predicted sizes), sepnets.patterns (pack's 8-bit rule
and pattern test) and the top-level modules; nothing from the procedure or the command lines.
"""
from sepnets.deploy.convert import OPSET, export  # noqa: F401
