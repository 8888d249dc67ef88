"""The red team's findings 3-8 (issue 11), one test each: no write through a symbolic link, make
variables as data, extreme values, malformed nets and models, output failures and the smaller
ones. Each input gives a result or the project's one-line error (exit 2) - never a traceback,
a hang, or a file written wrongly. Commands run in this process where that suffices (the
script's own wrapper, sepnets.errors.cli), as processes where the process is the point
(make, a file-size limit, SIGTERM)."""
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from sepnets import names
from sepnets.caffe import files, snapshots, wire
from sepnets.caffe.proto import caffe_pb2
from sepnets.cli import (
    export_onnx,
    fix_pattern,
    netinfo,
    plot_log,
    prepare_imagenet,
    prepare_mnist,
    quant_pattern,
    unpack_pattern,
)
from sepnets.engine import commands, memory
from sepnets.errors import CaffeFileError, ProgramFailed
from sepnets.patterns import pack
from tests.support import synthlog
from tests.support.fuzz import blob_bytes, layer_bytes, model_bytes, valid_model
from tests.support.models import model_for
from tests.support.project import NETS, REPO, run_command, run_tool, workdir

LENET = NETS / "engine" / "lenet.prototxt"     # Input layers, TRAIN and TEST
DEPLOY = REPO / "prototxt" / "lenet" / "deploy.prototxt"


def one_line_error(outcome, *parts):
    """Exit 2 with one `prog: error: ...` line that contains every part."""
    assert outcome.code == 2, (outcome.code, outcome.err[-3000:])
    last = outcome.err.strip().splitlines()[-1]
    assert ": error: " in last and "Traceback" not in outcome.err, outcome.err[-3000:]
    for part in parts:
        assert part in last, last
    return last


def engine(argv, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return run_command(commands.main, [str(a) for a in argv])


def edited_net(tmp_path, source, edit, name="net.prototxt"):
    net = text_format.Parse(source.read_text(), caffe_pb2.NetParameter())
    edit({layer.name: layer for layer in net.layer}, net)
    path = tmp_path / name
    path.write_text(text_format.MessageToString(net))
    return path


def limited(size):
    """preexec_fn: files may grow to `size` bytes (a full disk, as writes see it)."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


# ---------------------------------------------------------------- 3. no write through a link

def test_the_snapshot_write_probe_never_follows_a_symbolic_link(tmp_path, monkeypatch):
    """Caffe's probe `<prefix>_iter_0.tempfile` used to truncate a link's target to 0 bytes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "snap_iter_0.tempfile").symlink_to(victim)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{LENET}" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 snapshot: 1 '
                      f'snapshot_prefix: "{tmp_path}/snap"')
    one_line_error(engine(["train", "-solver", solver], tmp_path, monkeypatch),
                   "snap_iter_0.tempfile: is a symbolic link; refusing to write the snapshot probe to")
    assert victim.read_text() == "precious"


def test_the_pipeline_never_appends_through_a_linked_log_or_probe(tmp_path):
    root = workdir(tmp_path, "lenet")
    for part in ("train", "test"):
        (root / names.mnist_db(part)).mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "logs/lenet").mkdir(parents=True)
    (root / "logs/lenet/train.log").symlink_to(victim)
    out = run_tool(REPO / "tools/pipeline.py", "train", "lenet", cwd=root)
    assert out.returncode == 2 and "train.log: is a symbolic link; refusing to append" in out.stderr
    (root / "logs/lenet/train.log").unlink()
    (root / "models/lenet/lenet_iter_0.tempfile").symlink_to(victim)   # stock Caffe's probe
    out = run_tool(REPO / "tools/pipeline.py", "train", "lenet", cwd=root)
    assert out.returncode == 2 and "lenet_iter_0.tempfile: is a symbolic link" in out.stderr
    assert victim.read_text() == "precious"


# ---------------------------------------------------------------- 4. make variables are data

@pytest.mark.parametrize("assignment, variable", [
    ("NET=lenet; touch {m}; echo", "NET="), ("FILTER=5x5; touch {m}", "FILTER="),
    ("OFFSET=0.05; touch {m}", "OFFSET="), ("SWEEP=0.02:0.09:0.01; touch {m}", "SWEEP="),
    ("GPU=`touch {m}`", "GPU="), ("GPU=$(touch {m})", "GPU="), ("ENGINE=$(shell touch {m})", "ENGINE="),
    ("NET=it's; touch {m}", "NET="),
])
def test_make_variables_never_reach_a_shell(tmp_path, assignment, variable):
    marker = tmp_path / "marker"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "-o", "setup", "quant", "FILTER=5x5", "OFFSET=0.05",
                          assignment.format(m=marker)], cwd=REPO, capture_output=True, text=True, env=env)
    assert not marker.exists()
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"pipeline.py: error: {variable}")


@pytest.mark.parametrize("assignment, variable", [
    ("NET=lenet; touch {m}", "NET="), ("FILTER=5x5 `touch {m}`", "FILTER="), ("BQ=1; touch {m}", "BQ="),
])
def test_make_export_variables_never_reach_a_shell(tmp_path, assignment, variable):
    """`make export` goes through tools/pipeline.py make like the procedure's targets: each
    variable checked and named when wrong, none run by a shell."""
    marker = tmp_path / "marker"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "-o", "setup", "export",
                          assignment.format(m=marker)], cwd=REPO, capture_output=True, text=True, env=env)
    assert not marker.exists()
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"pipeline.py: error: {variable}")


def test_make_help_and_pattern_targets_quote_their_values(tmp_path):
    marker = tmp_path / "marker"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", "help", f'NET="; touch {marker}; echo "'],
                         cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and f'NET="; touch {marker}; echo "' in out.stdout
    out = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "-o", "setup",
                          f"train-x';touch {marker.name};'"], cwd=tmp_path, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 2 and "NET=\"x';touch marker;'\"" in out.stderr
    assert not marker.exists() and not (REPO / "marker").exists()


# ---------------------------------------------------------------- 5. values

@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.caffemodel"
    files.write_model(path, valid_model())
    return path


@pytest.mark.parametrize("offset", ["1e-320", "1e-39", "1e300", "3.5e38", "nan", "inf", "-0.05", "0"])
def test_offsets_that_float32_cannot_hold_are_refused(tmp_path, model_file, offset):
    out = run_command(quant_pattern.main, ["--model", str(model_file), "--filter", "3x3",
                                           f"--offset={offset}"])
    one_line_error(out, "--offset", "positive number that float32 holds as a normal number")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.caffemodel"]


def test_offset_names_are_lossless():
    """offset_text is the shortest decimal of the float32 the offset becomes: two offsets
    share a name exactly when they make the same model; the authors' names stay."""
    assert [names.offset_text(v) for v in (0.06, 0.1, 0.02, 0.09, 0.05)] == \
        ["0.06", "0.1", "0.02", "0.09", "0.05"]
    rng = np.random.default_rng(0)
    values = (rng.uniform(0, 1, 20000) * 10.0 ** rng.integers(-37, 38, 20000)).astype(np.float32)
    values = values[(values >= np.finfo(np.float32).tiny) & np.isfinite(values)]
    texts = [names.offset_text(float(v)) for v in values]
    assert all(np.float32(float(t)) == v for t, v in zip(texts, values))
    assert len(set(texts)) == len(set(values.tolist()))
    # round(x, 10) named 1.00000000001e-5 and 1.00000000002e-5 alike; as float32 they differ
    assert names.offset_text(1e-11) != names.offset_text(2e-11)


def test_huge_sweeps_and_colliding_offsets_are_refused_before_any_work(model_file):
    start = time.monotonic()
    out = run_command(quant_pattern.main, ["--model", str(model_file), "--filter", "3x3",
                                           "--sweep", "0.02:0.09:1e-12", "--net", str(DEPLOY)])
    one_line_error(out, "more than 1000 offsets")
    assert time.monotonic() - start < 5
    out = run_command(quant_pattern.main, ["--model", str(model_file), "--filter", "3x3",
                                           "--sweep", "0.06,0.0600000001", "--net", str(DEPLOY)])
    one_line_error(out, "are the same float32 (0.06)")


def test_nonfinite_weights_are_reported_and_refused_unless_allowed(tmp_path):
    model = valid_model()
    model.blobs["conv1"][0].flat[:3] = [np.nan, np.inf, np.nan]
    path = tmp_path / "nan.caffemodel"
    files.write_model(path, model)
    argv = ["--model", str(path), "--filter", "3x3", "--include-first", "--offset", "0.05",
            "--output", str(tmp_path / "out.caffemodel")]
    one_line_error(run_command(quant_pattern.main, argv), "'conv1' 2 NaN and 1 inf", "--allow-nonfinite")
    assert not (tmp_path / "out.caffemodel").exists()
    out = run_command(quant_pattern.main, argv + ["--allow-nonfinite"])
    assert out.code == 0 and "warning: " in out.err and "'conv1' 2 NaN and 1 inf" in out.err
    conv1 = files.read_model(tmp_path / "out.caffemodel").blobs["conv1"][0]
    assert set(np.unique(conv1)) == {np.float32(-0.05), np.float32(0.05)}


# ---------------------------------------------------------------- 6. readers and shape rules

def _conv(layers, net, **values):
    for key, value in values.items():
        setattr(layers["conv2"].convolution_param, key, value)


@pytest.mark.parametrize("edit, message", [
    (lambda layers, net: layers["conv2"].convolution_param.stride.append(0),
     "layer 'conv2' (Convolution): stride dimensions must be nonzero"),
    (lambda layers, net: _conv(layers, net, group=0), "layer 'conv2' (Convolution): group must be positive"),
    (lambda layers, net: setattr(layers["pool1"].pooling_param, "stride", 0),
     "layer 'pool1' (Pooling): stride dimensions must be nonzero"),
    (lambda layers, net: layers["conv2"].ClearField("bottom"),
     "layer 'conv2' (Convolution): takes 1 or more bottom blob(s), 0 given"),
    (lambda layers, net: layers["pool2"].top.__setitem__(0, "conv1"),
     "layer 'pool2' (Pooling): top blob 'conv1' produced by multiple sources"),
    (lambda layers, net: _conv(layers, net, kernel_h=3),
     "layer 'conv2' (Convolution): either kernel_size or kernel_h/kernel_w"),
    (lambda layers, net: _conv(layers, net, num_output=1000000000), "blob size exceeds INT_MAX"),
    (lambda layers, net: layers["conv2"].convolution_param.dilation.append(0),
     "layer 'conv2' (Convolution): dilation must be positive"),
    (lambda layers, net: setattr(layers["pool2"], "name", "conv2"),
     "layer 'conv2' (Pooling): a second layer of this name (layers 3 and 4); layer names must be "
     "unique"),
])
def test_malformed_nets_give_one_line(tmp_path, edit, message):
    path = edited_net(tmp_path, DEPLOY, edit)
    one_line_error(run_command(netinfo.main, [str(path)]), str(path), message)


def test_two_layers_of_one_name_are_refused_by_the_engine_and_the_export(tmp_path, monkeypatch):
    """Caffe accepts them, but weights go by layer name (CopyTrainedLayersFrom fills the
    first only): one line from the engine and from the ONNX export (whose graph would
    otherwise name two values alike), as from netinfo above."""
    def twice(layers, net):
        net.layer.add().CopyFrom(layers["relu1"])   # in place on ip1 again, at the end
    path = edited_net(tmp_path, DEPLOY, twice)
    weights = tmp_path / "w.caffemodel"
    files.write_model(weights, model_for(DEPLOY, lambda shape: np.ones(shape, np.float32)))
    message = "layer 'relu1' (ReLU): a second layer of this name"
    one_line_error(engine(["time", "-model", path, "-iterations", "1"], tmp_path, monkeypatch),
                   message)
    one_line_error(run_command(export_onnx.main, ["--net", str(path), "--weights", str(weights),
                                                  "-o", str(tmp_path / "x.onnx")]), message)
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution", "Im2col"])
def test_a_zero_dilation_is_one_line_for_every_convolution_type(tmp_path, monkeypatch, kind):
    """One rule (shapes.conv_geometry) for the three types, before torch sees a 0."""
    net = tmp_path / "dilated.prototxt"
    net.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 '
                   f'dim: 6 dim: 6 }} }} }}\nlayer {{ name: "c" type: "{kind}" bottom: "x" top: "y" '
                   'convolution_param { num_output: 2 kernel_size: 3 dilation: 0 } }\n')
    one_line_error(engine(["time", "-model", net, "-iterations", "1"], tmp_path, monkeypatch),
                   f"layer 'c' ({kind}): dilation must be positive")


def test_a_database_path_longer_than_the_system_takes(tmp_path, monkeypatch):
    """ENAMETOOLONG is not one of the errors pathlib's is_dir takes for "no": one line."""
    long_source = "x" * 300
    net = edited_net(tmp_path, LENET, lambda layers, net: None)
    text = net.read_text()
    data = (f'layer {{ name: "db" type: "Data" top: "d" top: "l" data_param {{ source: "{long_source}" '
            'batch_size: 2 backend: LMDB } }\n')
    net.write_text(data + text)
    one_line_error(engine(["time", "-model", net, "-iterations", "1"], tmp_path, monkeypatch),
                   f"{long_source}: cannot open the lmdb database: File name too long")


def _pool1_twice(layers, net):
    """A second layer making pool1 (from conv1, so not in place), right after the first."""
    rest = list(net.layer)
    del net.layer[:]
    for layer in rest:
        net.layer.add().CopyFrom(layer)
        if layer.name == "pool1":
            net.layer.add().CopyFrom(layer)
            net.layer[-1].name = "pool1b"


def test_a_top_made_twice_is_refused_as_caffe_refuses_it(stock, tmp_path):
    path = edited_net(tmp_path, DEPLOY, _pool1_twice)
    one_line_error(run_command(netinfo.main, [str(path)]),
                   "layer 'pool1b' (Pooling): top blob 'pool1' produced by multiple sources")
    out = stock.run_caffe(["time", "-model", path, "-iterations", "1"], check=False)
    assert out.returncode != 0 and "Top blob 'pool1' produced by multiple sources" in out.stderr


def test_a_missing_required_field_is_refused_as_caffe_refuses_it(stock, tmp_path):
    """clip_param's min and max are caffe.proto's only required fields: protobuf reads the
    text without them, then cannot write the message; Caffe's parser refuses the file."""
    path = tmp_path / "clip.prototxt"
    path.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 } } }\n'
                    'layer { name: "c" type: "Clip" bottom: "x" top: "y" clip_param { min: 0 } }\n')
    one_line_error(run_command(netinfo.main, [str(path)]),
                   "missing required field(s): layer[1].clip_param.max")
    out = stock.run_caffe(["time", "-model", path, "-iterations", "1"], check=False)
    assert out.returncode != 0 and "Message missing required fields: layer[1].clip_param.max" in out.stderr


def test_a_path_with_a_nul_character(tmp_path, monkeypatch):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{LENET}" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 snapshot: 1 '
                      f'snapshot_prefix: "{tmp_path}/a\\000b"')
    one_line_error(engine(["train", "-solver", solver], tmp_path, monkeypatch),
                   "field snapshot_prefix holds a NUL character")


@pytest.mark.parametrize("where", ["name", "type"])
def test_a_layer_name_or_type_that_is_not_utf8(tmp_path, where):
    model = valid_model()
    data = model_bytes(model)
    raw = b"conv1" if where == "name" else b"Convolution"
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(data.replace(raw, b"\xff" * len(raw), 1))
    out = run_command(quant_pattern.main, ["--model", str(path), "--filter", "3x3", "--offset", "0.05"])
    one_line_error(out, str(path), f"field {where} is not UTF-8 text")


def test_control_characters_from_a_file_stay_on_the_error_line(tmp_path, monkeypatch):
    """A prototxt string may hold a newline ("a\\nb"): an error naming it escapes it, so the
    message stays one line (errors.one_line); a resume check's reason too."""
    net = edited_net(tmp_path, LENET, lambda layers, net: setattr(
        layers["conv1"].convolution_param.weight_filler, "type", "consta\nt\x1b"))
    last = one_line_error(engine(["time", "-model", net, "-iterations", "1"], tmp_path, monkeypatch),
                          "unknown filler type 'consta\\nt\\x1b'")
    assert "\x1b" not in last
    state = tmp_path / "s_iter_1.solverstate"
    state.write_bytes(caffe_pb2.SolverState(iter=1, learned_net="x\ny").SerializeToString())
    (tmp_path / "s_iter_1.caffemodel").write_bytes(b"")
    problem = snapshots.pair_problem(state, tmp_path / "s_iter_1.caffemodel", None, "SGD")
    assert problem == f"its weights are x\\ny, not {tmp_path / 's_iter_1.caffemodel'}"
    state.write_bytes(caffe_pb2.SolverState(iter=1, learned_net="x\0y").SerializeToString())
    problem = snapshots.pair_problem(state, tmp_path / "s_iter_1.caffemodel", None, "SGD")
    assert problem.startswith("its weights are x\\x00y, not ")   # no ValueError from the NUL
    assert snapshots.pair_problem(state, None, None, "SGD") == "its caffemodel x\\x00y is missing"


def test_a_failed_program_shows_its_last_lines_after_the_error_line():
    """ProgramFailed (stock Caffe, pycaffe, a training the pipeline ran): the one error line,
    then the program's own last lines as it printed them."""
    def failing(argv):
        raise ProgramFailed("caffe train failed (exit 134):", ["F1202 net.cpp:1] Check failed",
                                                               "*** Check failure stack trace: ***"])
    out = run_command(failing, [])
    assert out.code == 2
    assert out.err.splitlines()[-3:] == ["test_hostile_inputs: error: caffe train failed (exit 134):",
                                         "F1202 net.cpp:1] Check failed",
                                         "*** Check failure stack trace: ***"]


@pytest.mark.parametrize("dims, legacy, message", [
    ([-3, 2], None, "negative dimension"), ([2 ** 32, 1], None, "exceeds INT_MAX"),
    ([2 ** 20, 2 ** 12], None, "more than Caffe's limit of INT_MAX"), ([1] * 33, None, "33 axes"),
    (None, [-1, 1, 1, 1], "negative dimension"),
])
def test_blob_dimensions_out_of_caffes_range(tmp_path, dims, legacy, message):
    layer = caffe_pb2.LayerParameter(name="c", type="Convolution")
    path = tmp_path / "dims.caffemodel"
    path.write_bytes(layer_bytes(layer, [blob_bytes(dims, legacy)]))
    with pytest.raises(CaffeFileError, match=message):
        files.read_model(path)


def test_a_packed_header_with_a_negative_dimension(tmp_path):
    model = valid_model()
    header = caffe_pb2.NetParameter.FromString(pack._header(model))
    header.layer[1].blobs[0].shape.dim[0] = -8
    chunks, _, _ = pack.encode(model, set(), 32)
    body = header.SerializeToString()
    path = tmp_path / "neg.pack"
    path.write_bytes(pack.MAGIC + len(body).to_bytes(4, "little") + body + b"".join(chunks[3:]))
    out = run_command(unpack_pattern.main, [str(path), str(tmp_path / "u.caffemodel")])
    one_line_error(out, "header: layer 'conv1' blob 0", "negative dimension")


def test_engine_layer_set_up_and_memory(tmp_path, monkeypatch):
    bad_eps = edited_net(tmp_path, NETS / "tiny.prototxt",
                         lambda layers, net: setattr(layers["bn1"].batch_norm_param, "eps", -1),
                         "eps.prototxt")
    one_line_error(engine(["time", "-model", bad_eps, "-iterations", "1"], tmp_path, monkeypatch),
                   "layer 'bn1' (BatchNorm): eps -1 must be positive")
    huge = edited_net(tmp_path, LENET, lambda layers, net: setattr(layers["ip1"].inner_product_param,
                                                                   "num_output", 1000000000), "huge.prototxt")
    one_line_error(engine(["time", "-model", huge, "-iterations", "1"], tmp_path, monkeypatch),
                   "layer 'ip1' (InnerProduct)", "blob size exceeds INT_MAX")
    # every blob within INT_MAX, together twice the free memory: refused before allocating
    per_layer = 4 * (3 * 2 * 2000000000 + 2 * 2000000000)   # weights + bias x3, top x2 (training)
    count = 2 * memory.available_bytes(torch.device("cpu")) // per_layer + 1
    wide = tmp_path / "wide.prototxt"
    wide.write_text('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 } } }\n'
                    + "".join(f'layer {{ name: "ip{i}" type: "InnerProduct" bottom: "x" top: "y{i}" '
                              'inner_product_param { num_output: 2000000000 } }\n' for i in range(count)))
    start = time.monotonic()
    out = engine(["time", "-model", wide, "-iterations", "1"], tmp_path, monkeypatch)
    need = (per_layer * count + 4 * 2 * 1) / 1e9
    one_line_error(out, f"{wide}: the net needs about {need:,.1f} GB for its blobs", "training", "available")
    assert time.monotonic() - start < 10


LR_SOLVER = """net: "NET" base_lr: 0.01 lr_policy: "step" gamma: 10 stepsize: 1
display: 100 max_iter: 320 snapshot: 0 snapshot_after_train: false snapshot_prefix: "PREFIX"
"""


def ip_net(tmp_path):
    """A one-InnerProduct training net on zero inputs (a solver's arithmetic, little else)."""
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "in" type: "Input" top: "x" top: "label" input_param { shape { dim: 2 '
                   'dim: 3 } shape { dim: 2 } } }\nlayer { name: "ip" type: "InnerProduct" bottom: "x" '
                   'top: "ip" inner_product_param { num_output: 2 } }\nlayer { name: "loss" type: '
                   '"SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
    return net


def test_an_overflowing_learning_rate_goes_on_as_in_caffe(stock, tmp_path, monkeypatch):
    """step policy, gamma 10: 0.01 * 10^n overflows float at n = 41 and double at n = 309;
    Caffe prints lr = inf and trains on; so does the engine (it raised OverflowError)."""
    net = ip_net(tmp_path)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(LR_SOLVER.replace("NET", str(net)).replace("PREFIX", str(tmp_path / "s")))
    ours = engine(["train", "-solver", solver], tmp_path, monkeypatch)
    assert ours.code == 0, ours.err[-2000:]
    theirs = stock.run_caffe(["train", "-solver", solver], cwd=tmp_path).stderr

    def rates(log):
        return [line.split("] ", 1)[1] for line in log.splitlines() if ", lr = " in line]
    assert rates(ours.err) == rates(theirs) == [f"Iteration {i}, lr = {r}" for i, r in
                                                 ((0, "0.01"), (100, "inf"), (200, "inf"), (300, "inf"))]


def test_adam_out_of_range_trains_on_as_caffe_does(stock, tmp_path, monkeypatch):
    """momentum2 10: Adam's bias correction sqrt(1 - 10^t) is NaN in C++'s doubles
    (adam_solver.cpp:40 has no CHECK) and stock Caffe trains on; so does the engine (math.sqrt
    raised ValueError), its weights then NaN. Observed, not matched: stock Caffe's weights
    stay as they were (its BLAS scaling by the NaN correction), so the printed losses differ
    from iteration 1 on."""
    net = ip_net(tmp_path)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}" type: "Adam" base_lr: 0.01 lr_policy: "fixed" momentum: 0.9 '
                      f'momentum2: 10 display: 1 max_iter: 3 snapshot_after_train: false '
                      f'snapshot_prefix: "{tmp_path / "s"}"\n')
    ours = engine(["train", "-solver", solver], tmp_path, monkeypatch)
    assert ours.code == 0, ours.err[-2000:]
    theirs = stock.run_caffe(["train", "-solver", solver], cwd=tmp_path).stderr

    def losses(log):   # "Iteration N (... iter/s ...), loss = X" and the last "Iteration N, loss = X"
        lines = [line.split("] Iteration ", 1)[1] for line in log.splitlines()
                 if "] Iteration " in line and ", loss = " in line]
        return [f"Iteration {line.split()[0].rstrip(',')}, loss = {line.rsplit(' = ', 1)[1]}"
                for line in lines]
    assert losses(ours.err) == ["Iteration 0, loss = 0.693147"] + [
        f"Iteration {i}, loss = nan" for i in (1, 2, 3)]
    assert losses(theirs) == [f"Iteration {i}, loss = 0.693147" for i in range(4)]


def test_a_snapshot_prefix_longer_than_a_file_name(tmp_path, monkeypatch):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{LENET}" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 snapshot: 1 '
                      f'snapshot_prefix: "{tmp_path}/{"x" * 300}"')
    one_line_error(engine(["train", "-solver", solver], tmp_path, monkeypatch),
                   "Cannot write to snapshot prefix", "File name too long")


# ---------------------------------------------------------------- 7. output failures

def test_an_output_that_is_a_directory_or_cannot_be_written(tmp_path, model_file):
    (tmp_path / "dir.caffemodel").mkdir()
    argv = ["--model", str(model_file), "--filter", "3x3", "--offset", "0.05", "--output"]
    one_line_error(run_command(quant_pattern.main, argv + [str(tmp_path / "dir.caffemodel")]),
                   "is a directory")
    one_line_error(run_command(unpack_pattern.main, [str(model_file), str(tmp_path)]), "not a packed")
    full = subprocess.run([sys.executable, REPO / "quant_pattern.py", *argv, tmp_path / "out.caffemodel"],
                          preexec_fn=limited(300), capture_output=True, text=True)
    assert full.returncode == 2 and full.stderr.strip().endswith(
        f"{tmp_path}/out.caffemodel: cannot write: File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.caffemodel", "m.caffemodel"]  # no temp left


def test_plot_log_writes_the_tables_and_the_figure_together_or_not_at_all(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(synthlog.training_log(synthlog.LogWriter(), 100, 10, 20, [("loss", 1.0)],
                                         [[("accuracy", 0), ("loss", 1.0)]]).text())
    out = subprocess.run([sys.executable, REPO / "tools/plot_log.py", log, "-o", tmp_path / "c.png",
                          "--csv", tmp_path / "c"], preexec_fn=limited(20000), capture_output=True,
                         text=True)
    assert out.returncode == 2
    assert "c.png: cannot write: File too large" in out.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.log"]     # no CSV, no PNG, no temp


def test_sigterm_during_a_sweep_removes_its_temporary_directory(stock, tmp_path):
    model = tmp_path / "m.caffemodel"
    files.write_model(model, model_for(LENET, lambda shape: np.full(shape, 0.01, np.float32)))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen([sys.executable, REPO / "quant_pattern.py", "--model", model, "--filter", "5x5",
                             "--sweep", "0.01:0.5:0.01", "--net", LENET, "--iterations", "1"],
                            cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(300):
        if list(scratch.glob("quant_sweep_*")):
            break
        time.sleep(0.1)
    assert list(scratch.glob("quant_sweep_*")), proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert list(scratch.iterdir()) == []


def test_prepare_mnist_output_failures_are_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    one_line_error(run_command(prepare_mnist.main, ["--out-dir", str(tmp_path / "file")]),
                   "exists and is not a directory")
    full = subprocess.run([sys.executable, REPO / "tools/prepare_mnist.py", "--out-dir", tmp_path / "db",
                           "--backend", "leveldb"], preexec_fn=limited(100000), capture_output=True,
                          text=True)
    assert full.returncode == 2 and "cannot write the database" in full.stderr.strip().splitlines()[-1]
    assert not any(p.name.startswith("mnist_") for p in (tmp_path / "db").iterdir())


# ---------------------------------------------------------------- 8. the smaller ones

def test_pattern_figures_of_layers_whose_names_map_alike(tmp_path):
    model = valid_model()
    for name in ("x/y", "x_y", "x y"):
        layer = model.net.layer.add()
        layer.CopyFrom(model.layer("conv1"))
        layer.name = name
        model.blobs[name] = [b.copy() for b in model.blobs["conv1"]]
    path = tmp_path / "m.caffemodel"
    files.write_model(path, model)
    out = run_command(quant_pattern.main, ["--model", str(path), "--filter", "3x3", "--include-first",
                                           "--offset", "0.05", "--stats", str(tmp_path / "stats")])
    assert out.code == 0, out.err
    written = sorted(p.name for p in (tmp_path / "stats").iterdir())
    assert "wrote 5 pattern figure(s)" in out.out and len(written) == 5     # conv1, conv2 and those
    assert {"x_y_patterns.png", "x_y_2_patterns.png", "x_y_3_patterns.png"} <= set(written)


def test_prepare_imagenet_keeps_list_paths_below_root_and_labels_in_int32(tmp_path):
    import cv2
    outside = tmp_path / "outside.png"
    cv2.imwrite(str(outside), np.zeros((4, 4, 3), np.uint8))
    root = tmp_path / "root"
    (root / outside.parent.relative_to("/")).mkdir(parents=True)
    listing = tmp_path / "list.txt"
    listing.write_text(f"{outside} 1\n")
    out = run_command(prepare_imagenet.main, ["--root", str(root), "--list", str(listing), "--out",
                                              str(tmp_path / "db"), "-j", "1"])
    one_line_error(out, "none of the 1 images could be read")           # not the file outside
    shutil.copy(outside, root / outside.relative_to("/"))
    ok = run_command(prepare_imagenet.main, ["--root", str(root), "--list", str(listing), "--out",
                                             str(tmp_path / "db"), "-j", "1"])
    assert ok.code == 0 and "wrote 1 of 1 images" in ok.err            # root + path, as Caffe
    listing.write_text("a.png 4294967296\n")
    one_line_error(run_command(prepare_imagenet.main, ["--root", str(root), "--list", str(listing), "--out",
                                                       str(tmp_path / "db2")]),
                   "line 1: label 4294967296 does not fit Datum's int32 label")


@pytest.mark.parametrize("edit, message", [
    (lambda layers, net: layers["conv2"].ClearField("bottom"), "takes 1 or more bottom blob(s), 0 given"),
    (lambda layers, net: layers["ip1"].bottom.__setitem__(0, "nowhere"), "unknown bottom blob 'nowhere'"),
    (lambda layers, net: setattr(layers["conv2"].convolution_param, "kernel_h", 0)
     or layers["conv2"].convolution_param.ClearField("kernel_size")
     or setattr(layers["conv2"].convolution_param, "kernel_w", 5), "kernel size must be given and nonzero"),
])
def test_fix_pattern_writes_nothing_for_a_broken_net(tmp_path, edit, message):
    path = edited_net(tmp_path, LENET, edit)
    out = run_command(fix_pattern.main, ["--net", str(path), "--filter", "5x5", "--out-dir", str(tmp_path)])
    one_line_error(out, str(path), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]


def test_empty_blobs_keep_their_shape_and_form(tmp_path):
    layer = caffe_pb2.LayerParameter(name="e", type="Scale")
    path = tmp_path / "e.caffemodel"
    path.write_bytes(layer_bytes(layer, [blob_bytes([0]), blob_bytes(legacy=[0, 0, 0, 0])]))
    model = files.read_model(path)
    assert [b.shape for b in model.blobs["e"]] == [(0,), (0, 0, 0, 0)] and model.legacy == {("e", 1)}
    files.write_model(tmp_path / "again.caffemodel", model)
    again = files.read_model(tmp_path / "again.caffemodel")
    assert [b.shape for b in again.blobs["e"]] == [(0,), (0, 0, 0, 0)] and again.legacy == {("e", 1)}
    # a blob with neither shape nor num/channels/height/width has 0 axes, one value (Blob::FromProto)
    path.write_bytes(layer_bytes(layer, [bytes(b"".join(bytes(p) for p in wire.length_field(
        wire.BLOB_DATA, b"")))]))
    with pytest.raises(CaffeFileError, match=r"blob shape \(\) holds 1 values but 0 are stored"):
        files.read_model(path)


def test_a_device_as_a_log(tmp_path):
    start = time.monotonic()
    one_line_error(run_command(plot_log.main, ["/dev/zero", "--csv", str(tmp_path / "c")]),
                   "/dev/zero: is not a regular file")
    assert time.monotonic() - start < 5
