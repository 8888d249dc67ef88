"""ONNX Runtime against stock pycaffe for the export tests: the same deploy net, caffemodel and
inputs on both sides (stock's forward passes for many nets in one pycaffe process), compared
blob by blob: every Caffe blob the exported graph holds under its own name."""
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from sepnets.nets import analysis
from tests.support import pycaffe


@dataclass
class Job:
    name: str
    model: Path                  # deploy prototxt
    inputs: dict                 # input blob -> array (the batch may differ from the net's)
    weights: Path = None         # None: the net's fillers, saved to `save`
    save: Path = None
    stock: dict = field(default_factory=dict)  # filled by run_stock: blob -> array


def random_inputs(model, batch, seed):
    """Normal random arrays for every Input top of the net, with `batch` images."""
    rng = np.random.default_rng(seed)
    info = analysis.analyze(model, "TEST")
    return {top: rng.standard_normal((batch, *shape[1:])).astype(np.float32)
            for layer in info.layers if layer.type == "Input"
            for top, shape in zip(layer.tops, layer.top_shapes)}


def run_stock(jobs, directory):
    """Stock pycaffe's TEST forward for every job, in one process (stock_programs/
    deploy_forward.py); sets job.stock."""
    directory = Path(directory)
    specs = []
    for job in jobs:
        inputs = {}
        for name, array in job.inputs.items():
            path = directory / f"{job.name}.input.{len(inputs)}.npy"
            np.save(path, array)
            inputs[name] = str(path)
        specs.append({"model": str(job.model), "weights": str(job.weights) if job.weights else None,
                      "save": str(job.save) if job.save else None,
                      "seed": zlib.crc32(job.name.encode()), "inputs": inputs,
                      "out": str(directory / f"{job.name}.stock.npz")})
    spec = directory / "deploy_jobs.json"
    spec.write_text(json.dumps(specs))
    pycaffe.run("deploy_forward", spec)
    for job, s in zip(jobs, specs):
        with np.load(s["out"]) as data:
            job.stock = {k: data[k] for k in data.files}
    return jobs


def run_onnx(path, inputs, names=()):
    """ONNX Runtime's values of the graph's outputs and of the values `names` (made outputs of
    a copy of the model), as {name: array}."""
    model = onnx.load(str(path))
    produced = {out for node in model.graph.node for out in node.output}
    outputs = {o.name for o in model.graph.output}
    for name in names:
        if name in produced and name not in outputs:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            outputs.add(name)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs()]
    return dict(zip(wanted, session.run(wanted, inputs)))


def differences(ours, theirs, rtol=1e-4, atol=1e-7):
    """(blob, max abs error, largest magnitude) where ONNX Runtime's value differs from stock
    Caffe's beyond rtol of the blob's largest magnitude (+ atol); and the blobs compared."""
    bad, compared = [], []
    for name, ref in theirs.items():
        if name not in ours:
            continue
        mine = np.asarray(ours[name], np.float64)
        ref = np.asarray(ref, np.float64)
        if mine.shape != ref.shape:
            bad.append((name, f"shape {mine.shape} vs stock {ref.shape}", None))
            continue
        err = float(np.max(np.abs(mine - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        if not err <= rtol * scale + atol:
            bad.append((name, err, scale))
        compared.append(name)
    return bad, compared


def assert_matches_stock(path, job, outputs_only=False, rtol=1e-4):
    """ONNX Runtime on `path` equals stock Caffe's forward of `job` within rtol: the net's
    outputs always, and every other blob the graph names unless outputs_only."""
    names = () if outputs_only else list(job.stock)
    ours = run_onnx(path, job.inputs, names)
    outputs = [o.name for o in onnx.load(str(path)).graph.output]
    bad, compared = differences(ours, job.stock, rtol)
    assert set(outputs) <= set(compared) and compared, (job.name, outputs, compared)
    assert not bad, f"{job.name}: ONNX Runtime differs from stock Caffe: {bad[:10]}"
    return compared
