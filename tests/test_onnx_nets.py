"""Every network of prototxt/ exported to ONNX (its deploy.prototxt, weights from the fillers
saved by stock pycaffe, BatchNorm statistics and biases made non-trivial): ONNX Runtime equals
stock Caffe's TEST forward within 1e-4 on random inputs, every blob; onnx.checker passes. A
LeNet and a SEP-Net small patterned by quant_pattern.py (a constant offset; per-filter scales):
the patterns are found in the weights, stored as INT2 signs that dequantize to exactly the
caffemodel's +-a, the file shrinks as netinfo's B/BQ predict, and the --bq export equals stock
Caffe on the 8-bit-rounded weights. Stock Caffe runs in two pycaffe processes in all."""
import argparse
import math
import re

import numpy as np
import onnx
import pytest

from sepnets import deploy
from sepnets.caffe import files
from sepnets.cli import flags
from sepnets.deploy import storage
from sepnets.errors import UserError
from sepnets.nets import analysis
from tests.support.deploy import Job, assert_matches_stock, random_inputs, run_onnx, run_stock
from tests.support.models import model_for
from tests.support.project import REPO, run_tool

NETS = sorted(p.parent.name for p in (REPO / "prototxt").glob("*/deploy.prototxt"))
# (net, quant_pattern.py flags): a constant offset, and the per-filter mean |W_f| scales
PATTERNED = {"lenet": ["--filter", "5x5", "--offset", "0.05"],
             "sepnet_small": ["--filter", "3x3", "--scale", "mean"]}


def deploy_net(name):
    return REPO / "prototxt" / name / "deploy.prototxt"


def batch(name):
    """Two images for the 28x28 and 32x32 nets, one for the 224x224 ones (their Input says 1:
    two shows the batch axis is dynamic)."""
    return 2 if analysis.analyze(deploy_net(name)).blob_shapes["data"][-1] <= 32 else 1


@pytest.fixture(scope="module")
def filled(stock, tmp_path_factory):
    """{net: Job} of stock Caffe's forward on the net's filler weights (saved by pycaffe)."""
    directory = tmp_path_factory.mktemp("onnx_nets")
    jobs = {name: Job(name, deploy_net(name), random_inputs(deploy_net(name), batch(name), i),
                      save=directory / f"{name}.caffemodel") for i, name in enumerate(NETS)}
    run_stock(list(jobs.values()), directory)
    return directory, jobs


@pytest.mark.parametrize("name", NETS)
def test_network_matches_stock_caffe(filled, name):
    directory, jobs = filled
    path = directory / f"{name}.onnx"
    report = deploy.export(deploy_net(name), jobs[name].save, path)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == deploy.OPSET
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim[:1]] == ["batch"]
    assert [o.name for o in model.graph.output] == ["prob"]
    assert assert_matches_stock(path, jobs[name], outputs_only=True)  # the graph as deployed
    compared = assert_matches_stock(path, jobs[name])  # and every blob
    assert len(compared) == len({b for b in jobs[name].stock if "_split_" not in b}) - 1  # not data
    # filler weights are no patterns: R, everything float32 (BatchNorm's factor kept as 1/factor)
    assert report.pattern_layers == []
    assert report.stored[storage.FLOAT32] == report.predicted["R"] - 4 * bn_layers(name)


# ---------------------------------------------------------------- pattern models

def bn_layers(name):
    return sum(1 for layer in analysis.analyze(deploy_net(name)).layers if layer.type == "BatchNorm")


WEIGHTED = ("Convolution", "InnerProduct")


def rounded_model(model, net):
    """The caffemodel with the weights that are not patterns rounded as --bq stores them:
    8-bit per output channel (these nets have no transposed InnerProduct)."""
    out = model.copy()
    types = {layer.name: layer.type for layer in files.read_net(net).layer}
    for layer, blobs in out.blobs.items():
        if types[layer] in WEIGHTED and storage.pattern_scales(blobs[0]) is None:
            blobs[0] = storage.rounded8(blobs[0], 0)
    return out


@pytest.fixture(scope="module")
def patterned(filled, stock):
    """{(net, bq): (onnx path, SizeReport, Job)} for the pattern models quant_pattern.py made
    from the filled weights, and the float export of the same net for comparison."""
    directory, jobs = filled
    out, stock_jobs = {}, []
    for name, quant_flags in PATTERNED.items():
        model = directory / f"{name}_patterned.caffemodel"
        proc = run_tool(REPO / "quant_pattern.py", "--model", jobs[name].save, *quant_flags,
                        "--output", model)
        assert proc.returncode == 0, proc.stderr
        rounded = files.write_model(directory / f"{name}_rounded.caffemodel",
                                      rounded_model(files.read_model(model), deploy_net(name)))
        for bq, weights in ((False, model), (True, rounded)):
            job = Job(f"{name}_{'bq' if bq else 'pattern'}", deploy_net(name), jobs[name].inputs, weights)
            path = directory / f"{job.name}.onnx"
            out[name, bq] = (path, deploy.export(deploy_net(name), model, path, bq=bq), job, model)
            stock_jobs.append(job)
    run_stock(stock_jobs, directory)
    return out


def binarized_layers(name):
    """The layers quant_pattern.py binarizes with PATTERNED[name]'s flags (its selection flags)."""
    parser = argparse.ArgumentParser()
    flags.add_selection(parser)
    args, _ = parser.parse_known_args(PATTERNED[name])
    layers = list(files.read_net(deploy_net(name)).layer)
    return [layer.name for layer in flags.selector(args).select(layers)]


@pytest.mark.parametrize("name", list(PATTERNED))
def test_pattern_layers_are_found_in_the_weights(patterned, name):
    """No flag tells the exporter which layers quant_pattern.py binarized: it finds them."""
    _, report, _, _ = patterned[name, False]
    assert report.pattern_layers == binarized_layers(name) and report.pattern_layers


@pytest.mark.parametrize("name", list(PATTERNED))
def test_pattern_export_dequantizes_to_the_exact_pattern_weights(patterned, name):
    path, report, job, model = patterned[name, False]
    weights = files.read_model(model)
    values = run_onnx(path, job.inputs, [f"{layer}/blob0" for layer in report.pattern_layers])
    onnx_model = onnx.load(str(path))
    initializers = {t.name: t for t in onnx_model.graph.initializer}
    for layer in report.pattern_layers:
        stored = weights.blobs[layer][0]
        assert np.array_equal(values[f"{layer}/blob0"], stored)  # bit for bit: +a_f / -a_f
        signs = initializers[f"{layer}/blob0/signs"]
        assert signs.data_type == onnx.TensorProto.INT2
        assert len(signs.raw_data) == math.ceil(stored.size / 4)
        assert f"{layer}/blob0" not in initializers  # no float32 copy of the weights


@pytest.mark.parametrize("bq", [False, True], ids=["patterns", "bq"])
@pytest.mark.parametrize("name", list(PATTERNED))
def test_pattern_export_matches_stock_caffe(patterned, name, bq):
    """Patterns + float32: stock Caffe on the patterned caffemodel; --bq: stock Caffe on that
    caffemodel with every other blob rounded to 8 bits as the export stores it."""
    path, _, job, _ = patterned[name, bq]
    onnx.checker.check_model(str(path), full_check=True)
    assert_matches_stock(path, job, outputs_only=True)
    assert_matches_stock(path, job)


@pytest.mark.parametrize("name", list(PATTERNED))
def test_bq_export_stores_the_8bit_rounded_weights(patterned, name):
    """What ONNX Runtime dequantizes is exactly the rounded weights given to stock Caffe, each
    within half a step of the weight it stands for."""
    path, report, job, model = patterned[name, True]
    rounded, original = files.read_model(job.weights), files.read_model(model)
    names = [layer for layer in rounded.blobs if layer not in report.pattern_layers
             and not np.array_equal(rounded.blobs[layer][0], original.blobs[layer][0])]
    values = run_onnx(path, job.inputs, [f"{layer}/blob0" for layer in names])
    for layer in names:
        blob, exact = rounded.blobs[layer][0], original.blobs[layer][0]
        assert np.array_equal(values[f"{layer}/blob0"], blob)
        flat, err = exact.reshape(len(exact), -1), np.abs(blob - exact).reshape(len(exact), -1)
        assert (err.max(1) <= (flat.max(1) - flat.min(1)) / 255 / 2 * 1.001).all()  # per channel
    assert len(names) == sum(1 for layer in files.read_net(deploy_net(name)).layer
                             if layer.type in WEIGHTED) - len(report.pattern_layers)


@pytest.mark.parametrize("name", list(PATTERNED))
def test_file_sizes_follow_netinfo(patterned, name):
    """The stored data is netinfo's B (patterns + float32) or BQ, up to the differences
    sepnets/deploy/sizes.py lists: 2 bits per sign, not 1; --bq's minimum and step per output
    channel of the weights, its biases, BatchNorm and Scale blobs in float32; BatchNorm's mean
    and deviation in place of its three blobs."""
    info = analysis.analyze(deploy_net(name))
    _, patterns, _, _ = patterned[name, False]
    _, bq, _, _ = patterned[name, True]
    extra_sign_bytes = sum(math.ceil(n / 4) - math.ceil(n / 8) for n in patterns.pattern_weights)
    stored = patterns.stored
    assert stored[storage.PATTERN] + stored[storage.FLOAT32] == (
        patterns.predicted["B"] + extra_sign_bytes - 4 * bn_layers(name))
    channels, vectors = [], []  # the 8-bit weights' output channels; the float32 other blobs
    for layer in info.layers:
        for i, shape in enumerate(layer.param_shapes):
            if i == 0 and layer.type in WEIGHTED:
                channels += [] if layer.name in bq.pattern_layers else [shape[0]]
            elif not (layer.type == "BatchNorm" and i == 2):
                vectors.append(math.prod(shape))
    assert bq.stored[storage.PATTERN] + bq.stored[storage.LINEAR8] + bq.stored[storage.FLOAT32] == (
        bq.predicted["BQ"] + extra_sign_bytes + sum(8 * (c - 1) for c in channels)
        + sum(3 * n - 8 for n in vectors) - 9 * bn_layers(name))
    for report in (patterns, bq):  # the graph (names, attributes) adds little to the tensors
        assert report.file_bytes - report.data_bytes < 0.1 * report.file_bytes
    assert bq.file_bytes < patterns.file_bytes < patterns.predicted["R"]


# ---------------------------------------------------------------- the command line

def test_command_prints_the_sizes_and_refuses_bad_input_in_one_line(filled, tmp_path):
    directory, jobs = filled
    tool = REPO / "tools" / "export_onnx.py"
    lenet, weights = deploy_net("lenet"), jobs["lenet"].save
    proc = run_tool(tool, "--net", lenet, "--weights", weights, "-o", tmp_path / "l.onnx")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {tmp_path / 'l.onnx'}: " in proc.stdout
    assert "netinfo's sizes for this model: R " in proc.stdout
    onnx.checker.check_model(str(tmp_path / "l.onnx"))
    for argv, message in (
            (("--net", REPO / "prototxt/lenet/train_val.prototxt", "--weights", weights),
             "layer 'mnist' (Data): this layer type is not exported to ONNX (export the deploy net"),
            (("--net", lenet), "give --net and --weights")):
        proc = run_tool(tool, *argv)
        assert proc.returncode == 2 and message in proc.stderr, (message, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def one_layer(tmp_path, name, layer):
    path = tmp_path / f"{name}.prototxt"
    path.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 '
                    f'dim: 9 dim: 9 }} }} }}\n{layer}\n')
    return path


def test_an_input_no_layer_reads_is_an_output_as_in_caffe(tmp_path):
    """Caffe's net outputs are the blobs no layer consumes, an Input's unread label too: the
    graph's output is then the graph's input itself, given the input's type (shape inference
    gives it none; onnx.checker refused it). ONNX Runtime passes it through."""
    net = tmp_path / "label.prototxt"
    net.write_text('layer { name: "in" type: "Input" top: "x" top: "label" input_param { shape { '
                   'dim: 1 dim: 1 dim: 4 dim: 4 } shape { dim: 1 } } }\n'
                   'layer { name: "relu" type: "ReLU" bottom: "x" top: "y" }\n')
    empty = files.write_model(tmp_path / "none.caffemodel", model_for(net, np.ones))
    deploy.export(net, empty, tmp_path / "label.onnx")
    x, label = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4), np.array([3], np.float32)
    out = run_onnx(tmp_path / "label.onnx", {"x": x, "label": label})
    assert sorted(out) == ["label", "y"]
    assert np.array_equal(out["label"], label) and np.array_equal(out["y"], np.maximum(x, 0))


def test_export_refuses_what_it_cannot_reproduce(filled, tmp_path):
    """One UserError line naming the file and the layer: other layer types, weights that do
    not fit, a pooling window that starts outside its input (stock Caffe reads nothing
    there), use_global_stats: false (batch statistics in TEST), an output that is an input."""
    directory, jobs = filled
    weights = jobs["lenet"].save
    prelu = 'layer { name: "act" type: "PReLU" bottom: "x" top: "y" }'
    bn = 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" }'
    window = ('layer { name: "pool" type: "Pooling" bottom: "x" top: "y" '
              'pooling_param { pool: MAX kernel_size: 2 stride: 3 } }')
    cases = {
        "layer 'act' (PReLU): this layer type is not exported to ONNX; exported types: BatchNorm, Bias":
            (one_layer(tmp_path, "prelu", prelu), weights),
        "layer 'pool' (Pooling): the last pooling window starts outside the 9x9 input":
            (one_layer(tmp_path, "window", window), weights),
        "does not fit": (deploy_net("resnet20"), weights),
        "no weights for layer 'bn'": (one_layer(tmp_path, "bn", bn), weights),
    }
    for message, (net, model) in cases.items():
        with pytest.raises(UserError, match=re.escape(message)):
            deploy.export(net, model, tmp_path / "out.onnx")
    batch_stats = one_layer(tmp_path, "stats", 'layer { name: "bn" type: "BatchNorm" bottom: "x" top: "y" '
                                               'batch_norm_param { use_global_stats: false } }')
    model = files.write_model(tmp_path / "stats.caffemodel", model_for(batch_stats, np.ones))
    with pytest.raises(UserError, match=re.escape("layer 'bn' (BatchNorm): use_global_stats: false")):
        deploy.export(batch_stats, model, tmp_path / "out.onnx")
    with pytest.raises(UserError, match="refusing to overwrite an input file"):
        deploy.export(deploy_net("lenet"), weights, weights)
    assert not (tmp_path / "out.onnx").exists()


def test_workspace_exports_the_newest_model_of_the_procedure(filled, tmp_path):
    """`make export NET=lenet FILTER=5x5`: the refined model if a fine-tuning exists, else the
    patterned one `make quant` made, else the trained snapshot; the .onnx beside it."""
    directory, jobs = filled
    (tmp_path / "prototxt").mkdir()
    (tmp_path / "prototxt" / "lenet").symlink_to(REPO / "prototxt" / "lenet")
    models = tmp_path / "models" / "lenet"
    models.mkdir(parents=True)
    trained = models / "lenet_iter_20.caffemodel"
    trained.write_bytes(jobs["lenet"].save.read_bytes())
    tool = REPO / "tools" / "export_onnx.py"
    proc = run_tool(tool, "--workspace", "lenet", "--filter", "5x5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lenet: exporting models/lenet/lenet_iter_20.caffemodel" in proc.stdout
    assert (models / "lenet_iter_20.onnx").is_file()
    quant = run_tool(REPO / "tools" / "pipeline.py", "quant", "lenet", "--filter", "5x5", "--offset",
                     "0.04", cwd=tmp_path)  # `make quant`: it records the model it made
    assert quant.returncode == 0, quant.stderr
    proc = run_tool(tool, "--workspace", "lenet", "--filter", "5x5", "--bq", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "exporting models/lenet/lenet_iter_20_quant_5x5_0.04.caffemodel" in proc.stdout
    assert "pattern layers (every filter +-a_f): conv2;" in proc.stdout and "this file is BQ" in proc.stdout
    assert (models / "lenet_iter_20_quant_5x5_0.04_bq.onnx").is_file()
