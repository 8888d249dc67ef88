"""Conformance harness: the same net, weights, inputs and output gradients in the engine and
in stock pycaffe (one pycaffe process for a batch of cases), results compared blob by blob.

Results of both sides use the keys of stock_programs/conformance_jobs.py: "k|blob|NAME"
(forward pass k), "param|LAYER|i", "diff|INPUT", "pdiff|LAYER|i". The engine runs in DIR/ours
and pycaffe in DIR/stock, so files a net writes under a relative name (HDF5Output) land apart.
"""
import contextlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sepnets.caffe import files, glog
from sepnets.engine.net import Net, net_state
from tests.support import pycaffe


@dataclass
class Case:
    name: str
    prototxt: str  # net text, or a path to a prototxt
    phase: str = "TEST"
    inputs: dict = field(default_factory=dict)  # Input top -> array
    backward: bool = True
    top_diffs: bool = True  # random gradients on the outputs that carry no loss weight
    forwards: int = 1
    random_weights: bool = True
    memory_data: tuple = None  # (data, labels) for a first MemoryData layer (set_input_arrays)


def _rng(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def _randomize(net, rng):
    """Every parameter blob random: weights with He-like scale (so deep nets stay in range),
    vectors around 0 (BatchNorm: positive variances and factor)."""
    for name, layer in net.layers.items():
        for i, blob in enumerate(layer.blobs):
            shape = tuple(blob.shape)
            values = rng.standard_normal(shape).astype(np.float32)
            if len(shape) >= 2:
                values *= np.float32(np.sqrt(2.0 * shape[0] / blob.numel()))
            elif layer.TYPE == "BatchNorm" and i > 0:
                values = np.abs(values) + np.float32(0.5)
            else:
                values *= np.float32(0.5)
            with torch.no_grad():
                blob.copy_(torch.from_numpy(values))


def _net_file(case, directory):
    text = case.prototxt
    if text.endswith(".prototxt") and "\n" not in text:
        return Path(text)
    path = directory / f"{case.name}.prototxt"
    path.write_text(text)
    return path


def prepare(case, directory):
    """The case's prototxt and (random) caffemodel in `directory`, and the generator its
    top diffs are drawn from next: (model, weights or None, rng)."""
    rng = _rng(case.name)
    model = _net_file(case, directory)
    weights = None
    if case.random_weights:
        net = Net(net_state(files.read_net(model), case.phase), source=str(model))
        _randomize(net, rng)
        weights = directory / f"{case.name}.caffemodel"
        files.write_model(weights, net.to_model())
        net.close()
    return model, weights, rng


def run_ours(case, model, weights, rng, device=None):
    """The case in the engine (on `device`, default the CPU): (results, top diffs used)."""
    net = Net(net_state(files.read_net(model), case.phase), device=device, source=str(model))
    if weights:
        net.copy_trained_layers_from(str(weights))
    out = {}
    for name, array in case.inputs.items():
        net.set_input(name, array)
    if case.memory_data is not None:
        net.set_input_arrays(*case.memory_data)
    loss = None
    for k in range(case.forwards):
        loss = net.forward(grad=case.backward and k == case.forwards - 1)
        for name, value in net.blobs.items():
            out[f"{k}|blob|{name}"] = value.detach().cpu().numpy()
    for name, layer in net.layers.items():
        for i, value in enumerate(net.params(name)):
            out[f"param|{name}|{i}"] = value
    diffs = {}
    if case.backward:
        if case.top_diffs:
            for name in net.outputs:
                if not net.loss_weights.get(name):
                    diffs[name] = rng.standard_normal(net.blob_shapes[name]).astype(np.float32)
        net.backward(loss, diffs)
        for name in case.inputs:
            out[f"diff|{name}"] = net.input_diff(name)
        for name, layer in net.layers.items():
            for i, value in enumerate(net.param_diffs(name)):
                out[f"pdiff|{name}|{i}"] = value
    net.close()
    return out, diffs


def run_cases(cases, directory, stock):
    """[(ours, stock's)] result dicts for each case, stock's from one pycaffe process."""
    directory = Path(directory)
    for side in ("ours", "stock"):
        (directory / side).mkdir(parents=True, exist_ok=True)
    glog.configure(min_level=2)
    jobs, ours = [], []
    try:
        with contextlib.chdir(directory / "ours"):
            for case in cases:
                jobs.append(_run_ours_job(case, directory, ours))
    finally:
        glog.configure(min_level=0)
    spec = directory / "jobs.json"
    spec.write_text(json.dumps(jobs))
    pycaffe.run("conformance_jobs", spec, cwd=directory / "stock")
    theirs = []
    for job in jobs:
        with np.load(job["out"]) as data:
            theirs.append({k: data[k] for k in data.files})
    return list(zip(ours, theirs))


def _run_ours_job(case, directory, ours):
    """Runs `case` in the engine (appending its results to `ours`); returns stock's job."""
    model, weights, rng = prepare(case, directory)
    result, diffs = run_ours(case, model, weights, rng)
    ours.append(result)
    job = {"model": str(model), "phase": case.phase, "weights": str(weights) if weights else None,
           "forwards": case.forwards, "backward": case.backward,
           "out": str(directory / f"{case.name}.stock.npz"), "inputs": {}, "top_diffs": {},
           "memory_data": {}}
    memory = dict(zip(("data", "labels"), case.memory_data or ()))
    for kind, arrays in (("inputs", case.inputs), ("top_diffs", diffs), ("memory_data", memory)):
        for name, array in arrays.items():
            path = directory / f"{case.name}.{kind}.{len(job[kind])}.npy"
            np.save(path, np.asarray(array, np.float32))
            job[kind][name] = str(path)
    return job


def compare(ours, theirs, rtol=1e-5, atol=1e-7):
    """Failures (key, max abs error, scale) where the engine differs from stock Caffe beyond
    rtol * (the blob's largest magnitude) + atol; keys of ours missing in stock's fail.

    Gradients are also allowed rtol of the net's largest gradient: a gradient that is zero in
    exact arithmetic (a conv bias before BatchNorm) is rounding noise in both engines."""
    grads = [np.max(np.abs(v)) for k, v in theirs.items() if k.startswith(("diff|", "pdiff|"))
             and np.size(v)]
    grad_atol = rtol * float(max(grads, default=0.0))
    failures, compared = [], 0
    for key, mine in ours.items():
        if key not in theirs:
            failures.append((key, "missing in stock Caffe's results", None))
            continue
        ref = np.asarray(theirs[key], np.float64)
        mine = np.asarray(mine, np.float64)
        if mine.size != ref.size or mine.squeeze().shape != ref.squeeze().shape:
            failures.append((key, f"shape {mine.shape} vs stock {ref.shape}", None))
            continue
        mine = mine.reshape(ref.shape)
        err = float(np.max(np.abs(mine - ref))) if ref.size else 0.0
        scale = float(max(np.max(np.abs(ref)), np.max(np.abs(mine)))) if ref.size else 0.0
        limit = rtol * scale + max(atol, grad_atol if key.startswith(("diff|", "pdiff|")) else 0)
        if not err <= limit:
            failures.append((key, err, scale))
        compared += 1
    for key in theirs:
        if key.startswith(("param|", "pdiff|")) and key not in ours:
            failures.append((key, "missing in the engine's results", None))
    return failures, compared


def assert_conforms(pairs, cases, rtol=1e-5, atol=1e-7):
    problems = []
    for case, (ours, theirs) in zip(cases, pairs):
        failures, compared = compare(ours, theirs, rtol, atol)
        if not compared:
            problems.append(f"{case.name}: nothing compared")
        problems += [f"{case.name}: {key}: {err} (scale {scale})" for key, err, scale in failures]
    assert not problems, "engine differs from stock Caffe:\n" + "\n".join(problems[:40])


def layer_net(name, layer_text, inputs, force_backward=True):
    """A net: one Input layer per input blob (shape from the arrays), then `layer_text`."""
    lines = [f'name: "{name}"']
    if force_backward:
        lines.append("force_backward: true")
    for blob, array in inputs.items():
        dims = " ".join(f"dim: {d}" for d in np.shape(array))
        lines.append(f'layer {{ name: "input_{blob}" type: "Input" top: "{blob}" '
                     f"input_param {{ shape {{ {dims} }} }} }}")
    lines.append(layer_text)
    return "\n".join(lines) + "\n"

