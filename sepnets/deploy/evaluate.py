"""ONNX Runtime's top-1 accuracy of an exported net on test batches, and the demo's deployment
step (the export, that accuracy, both recorded for results.md). The batches come from the
caller (the procedure transforms a test database as Caffe's TEST phase does)."""
import json

from sepnets.caffe import files
from sepnets.deploy.convert import OPSET, export


def accuracy(onnx_path, batches):
    """(top-1 accuracy, images) of the ONNX model over (images, labels) batches: the argmax
    over axis 1 of the model's first output against each label, as Caffe's Accuracy layer
    (top_k 1) counts."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    correct = total = 0
    for images, labels in batches:
        scores = session.run(None, {name: images})[0]
        best = scores.reshape(len(labels), scores.shape[1], -1)[:, :, 0].argmax(1)
        correct += int((best == labels).sum())
        total += len(labels)
    return correct / total, total


def export_evaluated(deploy_net, weights, output, batches, record, label):
    """The demo's deployment step: `weights` exported with `deploy_net` to `output` (patterns
    low-bit, the rest float32), its accuracy under ONNX Runtime on `batches`, all written to
    the JSON `record` for results.md (`label`: which of the evaluated models it is). Returns
    (sizes.SizeReport, accuracy)."""
    report = export(deploy_net, weights, output)
    top1, images = accuracy(output, batches)
    doc = {"label": label, "model": str(output), "weights": str(weights), "opset": OPSET,
           "bytes": report.file_bytes, "predicted": report.predicted,
           "pattern_layers": report.pattern_layers, "accuracy": top1, "images": images}
    files.atomic_write(record, json.dumps(doc, indent=1).encode(), inputs=[weights])
    return report, top1
