"""The generated networks (prototxt/<net>/): up to date with the generator, equal to the
authors' files where they exist, accepted by stock Caffe with the shapes netinfo infers, and
of the sizes the papers report."""
import math
import re

import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.nets import analysis, generate
from sepnets.nets.zoo import BY_NAME, NETWORKS
from tests.support.nets import assert_shapes_match, stock_nets, with_input_layers
from tests.support.project import REPO, run_tool

NAMES = [net.name for net in NETWORKS]
PROTOTXT = REPO / "prototxt"


def committed(name, filename="train_val.prototxt"):
    return PROTOTXT / name / filename


def info(name):
    """netinfo of the committed train_val (TEST phase), one image of the deploy shape."""
    return analysis.analyze(committed(name), "TEST", data_shapes={"data": BY_NAME[name].input_shape})


def close(value, target, tolerance=0.03):
    return abs(value / target - 1) <= tolerance


# ---------------------------------------------------------------- generator

def test_committed_files_are_what_make_nets_writes(tmp_path):
    proc = run_tool("tools/make_nets.py", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"{name}/{f}" for name in NAMES for f in generate.FILES)
    stale = [rel for rel in written if committed(*rel.split("/")).read_bytes() !=
             (tmp_path / rel).read_bytes()]
    assert not stale, f"run 'make nets': these committed files differ from the generator's: {stale}"
    assert {p.parent.name for p in PROTOTXT.glob("*/train_val.prototxt")} == set(NAMES)


def test_make_nets_cli_errors_and_readme_update(tmp_path):
    proc = run_tool("tools/make_nets.py", "alexnet", "--out", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "make_nets.py: error: unknown network alexnet; known: lenet, resnet20" in proc.stderr
    readme = tmp_path / "README.md"
    readme.write_text("no table here\n")
    proc = run_tool("tools/make_nets.py", "--readme", readme)
    assert proc.returncode == 2 and "no networks table markers" in proc.stderr
    readme.write_text(f"intro\n{generate.TABLE_BEGIN}\nold table\n{generate.TABLE_END}\nrest\n")
    proc = run_tool("tools/make_nets.py", "--readme", readme)
    assert proc.returncode == 0, proc.stderr
    assert readme.read_text() == (f"intro\n{generate.TABLE_BEGIN}\n{generate.table()}"
                                  f"{generate.TABLE_END}\nrest\n")


def test_readme_table_is_the_commands_output():
    proc = run_tool("tools/make_nets.py", "--table")
    assert proc.returncode == 0, proc.stderr
    text = (REPO / "README.md").read_text()
    begin = text.index(generate.TABLE_BEGIN) + len(generate.TABLE_BEGIN) + 1
    assert text[begin:text.index(generate.TABLE_END)] == proc.stdout
    assert proc.stdout.count("\n") == 2 + len(NETWORKS)


# ---------------------------------------------------------------- the authors' files

def without_data_sources(net):
    """Copy of the net with the Data layers' database, mean file and batch size cleared."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.type == "Data":
            layer.data_param.ClearField("source")
            layer.data_param.ClearField("batch_size")
            layer.transform_param.ClearField("mean_file")
    return out


def test_resnet20_is_the_authors_layer_by_layer(authors):
    ours = files.read_net(committed("resnet20"))
    theirs = files.read_net(authors / "resnet20_relu_msra_cifar10.prototxt")
    assert [line.name for line in ours.layer] == [line.name for line in theirs.layer]
    for a, b in zip(without_data_sources(ours).layer, without_data_sources(theirs).layer):
        assert a == b, f"layer {a.name} differs from the authors'"
    train, test = ours.layer[:2]
    assert (train.data_param.source, train.transform_param.mean_file) == (
        "data/cifar10/highway-padded/train_leveldb", "data/cifar10/highway-padded/paddedmean.binaryproto")
    assert (test.data_param.source, test.transform_param.mean_file) == (
        "data/cifar10/highway-padded/test_leveldb", "data/cifar10/highway-padded/mean.binaryproto")
    # their file says 256, but their training log ran with 128, the batch size
    assert (train.data_param.batch_size, test.data_param.batch_size) == (128, 100)
    log = (authors / "resnet20_train_third_version_cifar10.log").read_text()
    assert "batch_size: 128" in log and "Top shape: 128 3 32 32" in log


def block_role(name):
    """map32_5_conv_a -> map32_2_conv_a: blocks after the first of a stage are alike."""
    return re.sub(r"^map(\d+)_(\d+)_", lambda m: f"map{m[1]}_{min(int(m[2]), 2)}_", name)


@pytest.mark.parametrize("depth", [32, 44, 56])
def test_deeper_resnets_repeat_the_authors_blocks(depth):
    n = (depth - 2) // 6
    net = files.read_net(committed(f"resnet{depth}"))
    phases = lambda layer: tuple(rule.phase for rule in layer.include)  # noqa: E731
    resnet20 = {(layer.name, phases(layer)): layer for layer in files.read_net(committed("resnet20")).layer}
    sums = [layer.name for layer in net.layer if layer.type == "Eltwise"]
    assert sums == [f"map{c}_{i}_eltsum" for c in (16, 32, 64) for i in range(1, n + 1)]
    for layer in net.layer:
        like = caffe_pb2.LayerParameter()
        like.CopyFrom(resnet20[block_role(layer.name), phases(layer)])
        mine = caffe_pb2.LayerParameter()
        mine.CopyFrom(layer)
        for m in (like, mine):
            for f in ("name", "bottom", "top"):
                m.ClearField(f)
        assert mine == like, layer.name
    counts = info(f"resnet{depth}").counts()
    # conv1; 2n 16-channel convs; the projection and first conv of the 32 and 64 stages; the rest
    assert counts["3x3"] == 9 * (3 * 16 + 2 * n * 16 * 16 + 2 * (16 * 32 + 32 * 64)
                                 + (2 * n - 1) * (32 * 32 + 64 * 64))


def test_googlenet_is_the_authors(authors):
    ours = files.read_net(committed("googlenet"))
    theirs = files.read_net(authors / "googlenet_train_val.prototxt")
    for net in (ours, theirs):
        for layer in net.layer:
            if layer.type == "Data":
                layer.data_param.ClearField("source")
    assert ours == theirs


def solver_settings(path):
    solver = files.read_solver(path)
    for f in ("net", "snapshot_prefix", "solver_mode"):
        solver.ClearField(f)
    return solver


def test_solvers_are_the_authors(authors):
    for depth in (20, 32, 44, 56):
        assert (solver_settings(committed(f"resnet{depth}", "solver.prototxt"))
                == solver_settings(authors / "resnet20_solver.prototxt"))
    assert (solver_settings(committed("googlenet", "solver.prototxt"))
            == solver_settings(authors / "googlenet_quick_solver.prototxt"))


@pytest.mark.parametrize("name", NAMES)
def test_solver_paths_are_relative_to_the_repository(name):
    solver = files.read_solver(committed(name, "solver.prototxt"))
    assert solver.net == f"prototxt/{name}/train_val.prototxt" and (REPO / solver.net).is_file()
    assert solver.snapshot_prefix == f"models/{name}/{name}"
    assert solver.solver_mode == caffe_pb2.SolverParameter.CPU
    assert solver.max_iter > 0 and solver.base_lr > 0


# ---------------------------------------------------------------- sizes

@pytest.mark.parametrize("name,count", [("lenet", 431_080), ("resnet20", 295_327),
                                        ("googlenet", 6_998_552), ("squeezenet_1.0", 1_248_424)])
def test_exact_parameter_counts(name, count):
    assert info(name).total() == count


def test_customized_inception_size():
    net = info("customized_inception")
    counts = net.counts()
    assert close(net.total(), 5.10e6)
    assert close(net.total() - counts["3x3"], 2.43e6)  # left real-valued after 3x3 binarization
    assert counts["5x5"] == counts["7x7"] == counts["other kxk"] == 0
    doc = committed("customized_inception", "README.md").read_text()  # the design notes' numbers
    assert f"{net.total():,}" in doc and f"{net.total() - counts['3x3']:,}" in doc


def test_sepnet_sizes():
    small, large = info("sepnet_small"), info("sepnet_large")
    assert close(small.total(), 1.3e6) and close(small.sizes()["R"], 5.2e6)
    assert close(small.sizes()["B"], 4.2e6)  # SEP-Net-B small
    assert close(large.total(), 1.7e6) and close(large.sizes()["R"], 6.7e6)
    doc = (PROTOTXT / "sepnet" / "README.md").read_text()  # the design notes' numbers
    assert f"{small.total():,}" in doc and f"{large.total():,}" in doc
    assert f"{small.sizes()['B'] / 1e6:.2f} MB" in doc and f"{small.sizes()['BQ'] / 1e6:.2f} MB" in doc


@pytest.mark.parametrize("width,params,macs", [("0.5", 1.3e6, 149), ("0.75", 2.6e6, 325),
                                                ("1.0", 4.2e6, 569)])
def test_mobilenet_sizes(width, params, macs):
    net = info(f"mobilenet_{width}")
    # MobileNet's paper counts learned weights; netinfo also counts BatchNorm's stored statistics
    statistics = sum(math.prod(s) for layer in net.layers if layer.type == "BatchNorm"
                     for s in layer.param_shapes)
    assert close(net.total() - statistics, params)
    assert round(net.macs() / 1e6) == macs
    shapes = net.blob_shapes
    for layer in files.read_net(committed(f"mobilenet_{width}")).layer:
        if layer.type == "Convolution" and layer.name.endswith("/dw"):  # a group per channel
            p = layer.convolution_param
            assert p.group == p.num_output == shapes[layer.bottom[0]][1]


def test_sep_module_wiring():
    layers = {layer.name: layer for layer in files.read_net(committed("sepnet_small")).layer}
    conv = lambda name: layers[name].convolution_param  # noqa: E731
    module = layers["sep5_2"]
    entry, expand = module.bottom
    assert module.type == "Eltwise" and expand == "sep5_2/expand"
    assert layers["sep5_2/reduce"].bottom == [entry]
    for name in ("sep5_2/reduce", "sep5_2/expand", "sep5_2/prb1/1x1", "sep5_2/prb2/1x1"):
        assert conv(name).kernel_size == [1] and conv(name).group == 4
    for prb in ("sep5_2/prb1", "sep5_2/prb2"):
        pattern, linear = layers[prb].bottom
        assert layers[prb].type == "Eltwise" and (pattern, linear) == (f"{prb}/3x3", f"{prb}/1x1")
        assert layers[pattern].bottom == layers[linear].bottom
        assert conv(pattern).kernel_size == [3] and conv(pattern).group == 4
    # every 3x3 convolution but the first sits in a pattern residual block beside a 1x1
    for name, layer in layers.items():
        if layer.type == "Convolution" and layer.convolution_param.kernel_size == [3] and name != "conv1":
            assert name.endswith("/3x3") and layers[name[:-3] + "1x1"].bottom == layer.bottom


def test_deploy_nets_take_the_trained_weights():
    """Every learned layer of the TEST net is in deploy, with the same blob shapes."""
    for net in NETWORKS:
        train = info(net.name)
        deploy = analysis.analyze(committed(net.name, "deploy.prototxt"), "TEST")
        wanted = {layer.name: layer.param_shapes for layer in train.layers
                  if layer.param_shapes and layer.name in train.main}
        assert {layer.name: layer.param_shapes for layer in deploy.layers if layer.param_shapes} == wanted
        layers = files.read_net(committed(net.name, "deploy.prototxt")).layer
        assert layers[0].type == "Input" and layers[-1].type == "Softmax"
        assert not any(layer.type in ("Data", "SoftmaxWithLoss", "Accuracy") or len(layer.include)
                       for layer in layers)


# ---------------------------------------------------------------- stock Caffe

@pytest.fixture(scope="module")
def stock_views(stock, tmp_path_factory):
    """Stock pycaffe's shapes of every train_val (TRAIN and TEST, Data layers replaced by
    Input layers) and every deploy net (with a forward pass), from one pycaffe process."""
    folder = tmp_path_factory.mktemp("nets")
    specs = {}
    for net in NETWORKS:
        batch = 1 if net.input_shape[-1] == 224 else 2
        inputs = with_input_layers(committed(net.name), folder / f"{net.name}.prototxt", batch,
                                   net.input_shape[1:])
        specs[net.name] = {"TRAIN": (inputs, f"{inputs}|TRAIN"), "TEST": (inputs, f"{inputs}|TEST"),
                           "deploy": (committed(net.name, "deploy.prototxt"),
                                      f"{committed(net.name, 'deploy.prototxt')}|TEST|forward")}
    views = stock_nets(stock, [spec for net in specs.values() for _, spec in net.values()])
    return {name: {k: (path, views[spec]) for k, (path, spec) in net.items()}
            for name, net in specs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_stock_caffe_builds_every_net_with_netinfos_shapes(stock_views, name):
    for phase in ("TRAIN", "TEST"):
        assert_shapes_match(stock_views[name][phase][1], stock_views[name][phase][0], phase)
    path, view = stock_views[name]["deploy"]
    assert_shapes_match(view, path, "TEST")
    prob = np.array(view["outputs"]["prob"])
    assert prob.shape[:2] == (1, 10 if name.startswith(("lenet", "resnet")) else 1000)
    assert np.all(np.isfinite(prob)) and np.isclose(prob.sum(), 1, atol=1e-4)


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_caffe_time_runs_forward_and_backward(stock, tmp_path, name):
    net = with_input_layers(committed(name), tmp_path / "net.prototxt", 4,
                            BY_NAME[name].input_shape[1:])
    log = stock.run_caffe(["time", "-model", net, "-iterations", "2"]).stderr
    assert "Average Forward-Backward:" in log and "backward:" in log


def tiny_database(path, backend, shape, count=8):
    """A few random uint8 images of `shape` (channels, height, width) with labels 0..9."""
    rng = np.random.default_rng(0)
    with DatumWriter(path, backend) as db:
        for i in range(count):
            c, h, w = shape
            db.put(caffe_pb2.Datum(channels=c, height=h, width=w, label=i % 10,
                                   data=rng.integers(0, 256, shape, dtype=np.uint8).tobytes()))


@pytest.mark.parametrize("name", ["lenet", "resnet20"])
def test_caffe_trains_with_the_committed_files_from_the_repository_root(stock, tmp_path, name):
    """`caffe train --solver prototxt/<net>/solver.prototxt`, run where the repository root
    would be, reads the databases (and mean files) at the data paths the nets name, in the
    layout the data targets make, and snapshots under models/<net>/. The solver is the
    committed one cut to 1 iteration and 1 test batch."""
    folder = tmp_path / "prototxt" / name
    folder.mkdir(parents=True)
    (folder / "train_val.prototxt").write_bytes(committed(name).read_bytes())
    solver = files.read_solver(committed(name, "solver.prototxt"))
    solver.max_iter, solver.test_interval, solver.display = 1, 1, 1
    solver.test_iter[:] = [1]
    solver.test_initialization = False
    files.write_text(folder / "solver.prototxt", solver)
    if name == "lenet":
        for split in ("train", "test"):
            tiny_database(tmp_path / f"data/mnist/mnist_{split}_lmdb", "lmdb", (1, 28, 28))
    else:
        cifar = tmp_path / "data/cifar10/highway-padded"
        tiny_database(cifar / "train_leveldb", "leveldb", (3, 40, 40))
        tiny_database(cifar / "test_leveldb", "leveldb", (3, 32, 32))
        files.write_blobproto(cifar / "paddedmean.binaryproto", np.full((1, 3, 40, 40), 120.0),
                                legacy=True)
        files.write_blobproto(cifar / "mean.binaryproto", np.full((1, 3, 32, 32), 120.0),
                                legacy=True)
    (tmp_path / "models" / name).mkdir(parents=True)
    log = stock.run_caffe(["train", "-solver", f"prototxt/{name}/solver.prototxt"],
                          cwd=tmp_path).stderr
    assert "Iteration 1, Testing net (#0)" in log and "Optimization Done." in log
    model = files.read_model(tmp_path / "models" / name / f"{name}_iter_1.caffemodel")
    deploy = analysis.analyze(committed(name, "deploy.prototxt"), "TEST")
    errors, _ = analysis.check_weights(deploy, model)
    assert not errors and {layer.name for layer in deploy.layers if layer.param_shapes} <= set(model.blobs)
