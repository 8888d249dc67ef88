"""The engine's command line: `python -m sepnets.caffe` takes the caffe tool's verbs and
gflags-style flags and prints the lines stock Caffe prints (`test`'s batch and mean scores
with the same values, `time`'s per-layer and average lines); bad input gives one line and
exit 2; unsupported layers or parameters are errors naming the layer, never ignored."""
import io
import os
import re
import signal

import cv2
import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from sepnets.caffe import files, glog
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import commands, flags
from sepnets.engine.net import Net, net_state
from sepnets.engine.solver import SGDSolver
from sepnets.errors import UserError
from tests.support.project import NETS, REPO, run_tool

NET = """name: "scored"
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.01 } data_param { source: "DBPATH" backend: LMDB batch_size: 3 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy" }
"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(4)
    with DatumWriter(d / "db", "lmdb") as out:
        for i in range(7):
            image = rng.integers(0, 256, (2, 6, 6), dtype=np.uint8)
            out.put(caffe_pb2.Datum(channels=2, height=6, width=6, data=image.tobytes(), label=i % 3))
    model = d / "net.prototxt"
    model.write_text(NET.replace("DBPATH", str(d / "db")))
    glog.configure(min_level=2)
    net = Net(net_state(text_format.Parse(model.read_text(), caffe_pb2.NetParameter()), "TEST"))
    weights = d / "w.caffemodel"
    files.write_model(weights, net.to_model())
    net.close()
    glog.configure(min_level=0)
    return d, model, weights


def messages(log, tag_file=None):
    out = []
    for line in log.splitlines():
        m = re.match(r"^[IWEF]\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\] (.*)$", line)
        if m and (tag_file is None or m.group(1) == tag_file):
            out.append(m.group(2))
    return out


def scores(lines):
    """("Batch 0, loss", 1.2), ("Loss", 1.1), ("accuracy", 0.5)... from `caffe test` lines."""
    out = []
    for line in lines:
        m = re.match(r"^(Batch \d+, \w+|\w+) = ([-\d.e+]+)", line) or \
            re.match(r"^(Loss): ([-\d.e+]+)$", line)
        if m:
            out.append((m.group(1), float(m.group(2))))
    return out


def test_test_command_prints_stock_caffes_lines_and_values(stock, scored):
    d, model, weights = scored
    argv = ["test", "-model", model, "-weights", weights, "-iterations", "4"]
    theirs = messages(stock.run_caffe(argv, cwd=d).stderr, "caffe.cpp")
    proc = run_tool("-m", "sepnets.caffe", *argv[:1], "--model=" + str(model),
                    "--weights", weights, "-iterations=4")
    assert proc.returncode == 0, proc.stderr
    ours = messages(proc.stderr, "caffe.cpp")
    ours_scores, their_scores = scores(ours), scores(theirs)
    assert [k for k, _ in ours_scores] == [k for k, _ in their_scores] and len(their_scores) == 4 * 2 + 3
    for (_, a), (_, b) in zip(ours_scores, their_scores):
        assert abs(a - b) <= 2e-5 * max(abs(b), 1e-3)
    assert [line for line in ours if line.startswith("loss = ")][0].endswith("loss)")  # "(* 1 = x loss)"


def test_time_command_prints_stock_caffes_summary(stock, scored):
    d, model, _ = scored
    proc = run_tool(REPO / "tools" / "caffe_torch.py", "time", "-model", model, "-iterations", "2")
    assert proc.returncode == 0, proc.stderr
    ours = messages(proc.stderr, "caffe.cpp")
    theirs = messages(stock.run_caffe(["time", "-model", model, "-iterations", "2"], cwd=d).stderr,
                      "caffe.cpp")
    summary = ("Average Forward pass: ", "Average Backward pass: ", "Average Forward-Backward: ",
               "Total Time: ", "*** Benchmark ends ***", "Initial loss: ")
    for start in summary:
        assert any(line.startswith(start) for line in ours)
        assert any(line.startswith(start) for line in theirs)
    layer_lines = re.compile(r"^ *(\S+)\t(forward|backward): [\d.e+-]+ ms\.$")
    ours_layers = [m.groups() for line in ours if (m := layer_lines.match(line))]
    their_layers = [m.groups() for line in theirs if (m := layer_lines.match(line))]
    # stock Caffe also times the Split layers it inserts; the engine has none to time
    assert ours_layers == [g for g in their_layers if not g[0].endswith("_split")]
    assert len(ours_layers) == 2 * 6
    per_iteration = re.compile(r"^Iteration: \d+ forward-backward time: [\d.e+-]+ ms\.$")
    for log in (ours, theirs):
        assert len([line for line in log if per_iteration.match(line)]) == 2
    # the averages time the training passes; one line says where the per-layer rows come from
    notes = [line for line in messages(proc.stderr, "commands.py") if "instrumented pass" in line]
    assert len(notes) == 1 and "the Average lines time the fused forward and backward" in notes[0]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = run_tool("-m", "sepnets.caffe", "train", "-solver", tmp_path / "missing.prototxt")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"sepnets.caffe: error: {tmp_path / 'missing.prototxt'}: no such file"]


def test_gflags_forms():
    values, rest = flags.parse(["-solver", "s.prototxt", "train", "--iterations=5", "--gpu", "",
                                "-weights=a,b"], commands.FLAGS)
    assert rest == ["train"]
    assert (values["solver"], values["iterations"], values["gpu"], values["weights"]) == \
        ("s.prototxt", 5, "", "a,b")
    with pytest.raises(flags.FlagError, match="unknown command line flag 'bogus'"):
        flags.parse(["-bogus", "1"], commands.FLAGS)
    with pytest.raises(flags.FlagError, match="illegal value 'x' specified for int32 flag"):
        flags.parse(["-iterations", "x"], commands.FLAGS)
    assert commands.stages_from("") == [""] and commands.stages_from("a,b") == ["a", "b"]


def test_train_refuses_weights_and_snapshot_together():
    with pytest.raises(UserError, match="not both"):
        commands.main(["train", "-solver", "s", "-weights", "w", "-snapshot", "x"])


def build(text, phase="TEST"):
    glog.configure(min_level=2)
    try:
        return Net(net_state(text_format.Parse(text, caffe_pb2.NetParameter()), phase))
    finally:
        glog.configure(min_level=0)


INPUT = 'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }\n'


@pytest.mark.parametrize("layer, problem", [
    ('layer { name: "odd" type: "Im2Col" bottom: "x" top: "y" }',
     "layer 'odd': layer type 'Im2Col' is not supported by the engine (supported: AbsVal, "),
    ('layer { name: "py" type: "Python" bottom: "x" top: "y" python_param { module: "m" layer: "L" } }',
     "layer 'py': layer type 'Python' is refused: the engine never imports code a prototxt names"),
    ('layer { name: "w" type: "WindowData" top: "y" top: "z" }',
     "layer 'w': layer type 'WindowData' is refused: R-CNN's window-file layer samples"),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: STOCHASTIC '
     'kernel_size: 2 } }',
     "layer 'p' (Pooling): only MAX and AVE pooling"),
    ('layer { name: "c" type: "Convolution" bottom: "x" top: "y" convolution_param { num_output: 2 '
     'kernel_size: 1 axis: 2 } }',
     "layer 'c' (Convolution): only axis 1"),
    ('layer { name: "l" type: "SoftmaxWithLoss" bottom: "x" bottom: "x" top: "a" top: "b" }',
     "layer 'l' (SoftmaxWithLoss): takes 1 top blob(s), 2 given"),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" top: "mask" pooling_param { pool: MAX '
     'kernel_size: 2 } }',
     "layer 'p' (Pooling): takes 1 top blob(s), 2 given"),
    ('layer { name: "p" type: "Pooling" bottom: "x" top: "y" pooling_param { pool: MAX kernel_size: 2 '
     'stride: 5 } }',
     "the last pooling window starts outside"),
    ('layer { name: "c" type: "Im2col" bottom: "x" top: "y" convolution_param { num_output: 2 '
     'kernel_size: 2 } }',
     "layer 'c' (Im2col): convolution_param.num_output is not supported by the engine"),
    ('layer { name: "s" type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: 2 pool: STOCHASTIC } }',
     "layer 's' (SPP): only MAX and AVE pooling are supported: STOCHASTIC pooling is not "
     "implemented on the CPU in stock Caffe either"),
    ('layer { name: "s" type: "SPP" bottom: "x" top: "y" spp_param { pyramid_height: 4 } }',
     "layer 's' (SPP): pyramid level 3 pools 4x4 into 8x8 bins with kernel [1, 1] and pad [2, 2]"),
    ('layer { name: "a" type: "AbsVal" bottom: "x" top: "x" }',
     "layer 'a' (AbsVal): AbsVal Layer does not allow in-place computation."),
    ('layer { name: "e" type: "Exp" bottom: "x" top: "y" exp_param { base: -2 } }',
     "layer 'e' (Exp): base must be strictly positive."),
    ('layer { name: "c" type: "Crop" bottom: "x" bottom: "x" top: "y" crop_param { offset: 1 } }',
     "layer 'c' (Crop): the crop for dimension 2 is out-of-bounds with size 4 and offset 1"),
    ('layer { name: "t" type: "Tile" bottom: "x" top: "y" }',
     "layer 't' (Tile): Number of tiles must be specified"),
    ('layer { name: "r" type: "RNN" bottom: "x" bottom: "x" top: "y" recurrent_param { num_output: 2 } }',
     "layer 'r' (RNN): bottom[1] must have exactly 2 axes"),
    ('layer { name: "i" type: "InfogainLoss" bottom: "x" bottom: "x" top: "l" loss_param { normalize: '
     'true } }',
     'layer \'i\' (InfogainLoss): normalize is deprecated. use "normalization"'),
    ('layer { name: "d" type: "HDF5Data" top: "y" transform_param { } hdf5_data_param { source: '
     '"SOURCE" batch_size: 1 } }',
     "layer 'd' (HDF5Data): HDF5Data does not transform data."),
    ('layer { name: "d" type: "ImageData" top: "y" top: "z" image_data_param { source: "SOURCE" '
     'mirror: true } }',
     "layer 'd' (ImageData): image_data_param.mirror is not supported by the engine"),
    ('layer { name: "d" type: "MemoryData" top: "y" top: "z" memory_data_param { batch_size: 2 '
     'channels: 1 } }',
     "layer 'd' (MemoryData): batch_size, channels, height, and width must be specified"),
    ('force_backward: true layer { name: "e" type: "Embed" bottom: "x" top: "y" embed_param { '
     'num_output: 2 input_dim: 3 } }',
     "layer 'e' (Embed): force_backward makes stock Caffe stop here (Can't backpropagate to "
     "EmbedLayer input.); remove force_backward"),
    ('force_backward: true layer { name: "a" type: "ArgMax" bottom: "x" top: "y" }',
     "layer 'a' (ArgMax): force_backward makes stock Caffe stop here (ArgMaxLayer's Backward is "
     "not implemented)"),
])
def test_unsupported_layers_and_parameters_name_the_layer(tmp_path, layer, problem):
    """Refused types, options and configurations stock Caffe stops on: one line naming the
    layer (and the field)."""
    (tmp_path / "list.h5.txt").write_text(f"{tmp_path / 'rows.h5'}\n")
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'image.png'} 0\n")
    cv2.imwrite(str(tmp_path / "image.png"), np.zeros((4, 4, 3), np.uint8))
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f["y"] = np.zeros((2, 3))
    source = tmp_path / ("list.h5.txt" if "HDF5Data" in layer else "list.txt")
    with pytest.raises(UserError, match=re.escape(problem)):
        build(INPUT + layer.replace("SOURCE", str(source)))


@pytest.mark.parametrize("layer, feed, problem", [
    ('layer { name: "e" type: "Embed" bottom: "x" top: "y" embed_param { num_output: 2 input_dim: 3 } }',
     {"x": np.full((1, 2, 4, 4), 3.0)}, "layer 'e' (Embed): input 3 outside [0, 3)"),
    ('layer { name: "r" type: "BatchReindex" bottom: "x" bottom: "i" top: "y" }',
     {"i": np.array([0, -1.0])}, "layer 'r' (BatchReindex): index -1 outside [0, 1)"),
    ('layer { name: "l" type: "HingeLoss" bottom: "f" bottom: "i" top: "y" }',
     {"i": np.array([0, 7.0])}, "layer 'l' (HingeLoss): label 7 outside [0, 3)"),
])
def test_bad_indices_are_one_line_errors_naming_the_layer(layer, feed, problem):
    """Index values stock Caffe would read out of bounds with (its DCHECKs are off in
    release builds, and some CHECKs stop it): refused at the forward pass."""
    inputs = INPUT + ('layer { name: "in2" type: "Input" top: "i" top: "f" input_param { shape { dim: 2 } '
                      'shape { dim: 2 dim: 3 } } }\n')
    net = build(inputs + layer)
    for name, value in feed.items():
        net.set_input(name, value)
    with pytest.raises(UserError, match=re.escape(problem)):
        net.forward()


def test_memory_data_needs_arrays_and_hdf5_output_writes_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = build('layer { name: "m" type: "MemoryData" top: "x" top: "l" memory_data_param { '
                'batch_size: 2 channels: 1 height: 1 width: 2 } }\n'
                'layer { name: "o" type: "HDF5Output" bottom: "x" bottom: "l" '
                'hdf5_output_param { file_name: "out.h5" } }')
    with pytest.raises(UserError, match=re.escape("layer 'm' (MemoryData): MemoryDataLayer needs "
                                                  "to be initialized by calling Reset")):
        net.forward()
    with pytest.raises(UserError, match="first dimensions of input arrays must be a multiple"):
        net.set_input_arrays(np.zeros((3, 1, 1, 2), np.float32), np.zeros(3, np.float32))
    net.set_input_arrays(np.zeros((4, 1, 1, 2), np.float32), np.zeros(4, np.float32))
    net.forward()
    assert (tmp_path / "out.h5").is_file()
    with pytest.raises(UserError, match="stock Caffe stops here too: HDF5Output saves one forward"):
        net.forward()


def test_deprecated_data_param_transformations_are_refused(scored):
    """Caffe 1.0's Data layer reads only transform_param; data_param.scale would be dropped."""
    d, _, _ = scored
    text = (f'layer {{ name: "data" type: "Data" top: "x" data_param {{ source: "{d / "db"}" '
            f'backend: LMDB batch_size: 2 scale: 0.5 }} }}')
    with pytest.raises(UserError, match=re.escape("layer 'data' (Data): data_param.scale is not "
                                                  "supported by the engine")):
        build(text)


def test_another_layer_types_parameters_are_ignored_with_a_warning():
    log = io.StringIO()
    glog.configure(stream=log, min_level=1)
    try:
        text = INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" pooling_param { pool: AVE } }'
        Net(net_state(text_format.Parse(text, caffe_pb2.NetParameter()), "TEST"))
    finally:
        glog.configure(stream=None, min_level=0)
    assert "layer 'r' (ReLU): pooling_param belongs to another layer type; ignored" in log.getvalue()
    assert log.getvalue().startswith("W")


def test_signals_become_solver_requests():
    with commands.SignalActions("stop", "snapshot") as actions:
        os.kill(os.getpid(), signal.SIGHUP)
        assert actions.request() == "snapshot"
        os.kill(os.getpid(), signal.SIGINT)
        assert actions.request() == "stop"
        assert actions.request() == "none"
    with pytest.raises(UserError, match='Invalid signal effect "later"'):
        commands.SignalActions("later", "none")


def test_a_stop_request_snapshots_and_ends_early(tmp_path):
    """Caffe: a STOP request ends Step after the current update; Solve then snapshots
    (snapshot_after_train) and logs 'Optimization stopped early.'"""
    param = text_format.Parse(f'net: "{NETS / "tiny_train.prototxt"}" base_lr: 0.01 lr_policy: "fixed" '
                              f'max_iter: 10 snapshot_prefix: "{tmp_path / "s"}"',
                              caffe_pb2.SolverParameter())
    log = io.StringIO()
    glog.configure(stream=log)
    try:
        solver = SGDSolver(param)
        solver.request_action = lambda: "stop" if solver.iter == 3 else "none"
        solver.solve()
    finally:
        glog.configure(stream=None)
    assert solver.iter == 3 and "Optimization stopped early." in log.getvalue()
    assert (tmp_path / "s_iter_3.caffemodel").exists() and (tmp_path / "s_iter_3.solverstate").exists()
