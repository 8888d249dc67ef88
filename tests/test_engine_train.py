"""Training in the engine against stock `caffe train`: the same solver, net and LMDB data
(fixed order, no mirror), both starting from stock Caffe's own iteration-0 snapshot.

- 20 iterations with momentum, weight decay and a multistep learning rate: the per-iteration
  losses, learning rates and test outputs in the two logs (read by the same log parser)
  agree, and so do the weights, BatchNorm statistics and momentum history of the iteration
  10 and 20 snapshots; the lr_mult 0 layer stays bit-identical in both;
- iter_size, clip_gradients, L1 regularization, the step policy and average_loss smoothing;
- snapshots cross over: stock Caffe resumes from the engine's iteration-10 snapshot and the
  engine from stock Caffe's, each reproducing the other's uninterrupted run;
- the same for every other Caffe solver type (Nesterov, AdaGrad, RMSProp, AdaDelta, Adam; two
  of them named by the deprecated solver_type enum): rates, losses, test outputs, snapshot
  weights and history (two blobs per learnable blob for AdaDelta and Adam), crossing over.
The engine runs through its command line (`sepnets.engine.commands.main`) in this process.
"""
import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import commands, updates
from sepnets.errors import UserError
from tests.support import caffe_log
from tests.support.project import REPO
from tests.support.training import assert_history_close, assert_models_close, run_engine

NET = """name: "small"
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TRAIN }
  transform_param { scale: 0.0078125 mean_value: 128 }
  data_param { source: "TRAIN_DB" backend: LMDB batch_size: 4 } }
layer { name: "data" type: "Data" top: "data" top: "label" include { phase: TEST }
  transform_param { scale: 0.0078125 mean_value: 128 }
  data_param { source: "TEST_DB" backend: LMDB batch_size: 4 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 weight_filler { type: "msra" }
    bias_filler { type: "constant" value: 0.1 } } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1"
  param { lr_mult: 0 } param { lr_mult: 0 } param { lr_mult: 0 } }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pattern" type: "Convolution" bottom: "conv1" top: "pattern"
  param { lr_mult: 0 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 stride: 2 bias_term: false
    weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "relu2" type: "ReLU" bottom: "pattern" top: "pattern" }
layer { name: "pool" type: "Pooling" bottom: "pattern" top: "pool"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip"
  inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "ip" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""

SOLVER = """net: "NET"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.001
lr_policy: "multistep" gamma: 0.3 stepvalue: 6 stepvalue: 13
display: 1 max_iter: 20
test_interval: 10 test_iter: 2
snapshot: 10 snapshot_prefix: "PREFIX"
random_seed: 1
"""

VARIANT = """net: "NET"
base_lr: 0.1 momentum: 0.8 weight_decay: 0.01 regularization_type: "L1"
lr_policy: "step" gamma: 0.5 stepsize: 3
iter_size: 2 clip_gradients: 0.5 average_loss: 3
display: 1 max_iter: 8 snapshot_prefix: "PREFIX"
"""

# The other solver types, on NET without conv1's bias: its gradient is zero but for rounding
# (BatchNorm follows), which the adaptive rules would scale up to steps of the learning rate.
ADAPTIVE_NET = (("param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }",
                 "param { lr_mult: 1 decay_mult: 1 }"),
                ("num_output: 8 kernel_size: 3 pad: 1 weight_filler",
                 "num_output: 8 kernel_size: 3 pad: 1 bias_term: false weight_filler"))
SOLVERS = {
    "Nesterov": 'type: "Nesterov" base_lr: 0.05 momentum: 0.9 weight_decay: 0.001 '
                'lr_policy: "multistep" gamma: 0.3 stepvalue: 6 stepvalue: 13',
    "AdaGrad": 'solver_type: ADAGRAD base_lr: 0.05 weight_decay: 0.001 delta: 1e-6 '
               'lr_policy: "step" gamma: 0.5 stepsize: 7',
    "RMSProp": 'type: "RMSProp" base_lr: 0.005 rms_decay: 0.9 weight_decay: 0.001 '
               'lr_policy: "inv" gamma: 0.1 power: 0.75',
    "AdaDelta": 'type: "AdaDelta" base_lr: 1 momentum: 0.95 delta: 1e-6 weight_decay: 0.001 '
                'lr_policy: "fixed"',
    "Adam": 'solver_type: ADAM base_lr: 0.01 momentum: 0.9 momentum2: 0.995 '
            'weight_decay: 0.001 lr_policy: "fixed"',
}
SOLVER_COMMON = """net: "NET"
display: 1 max_iter: 20 test_interval: 10 test_iter: 2
snapshot: 10 snapshot_prefix: "PREFIX" random_seed: 1
"""

# Observed: weights after 20 iterations within 5e-6 of stock's, printed losses within their
# 6 significant digits; the bound leaves room for other BLAS/oneDNN builds.
RTOL = 5e-5
ITERS_PER_EPOCH = 10  # 40 training records / batch 4: a resumed run sees the same batches


def make_db(path, count, rng):
    with DatumWriter(path, "lmdb") as out:
        for i in range(count):
            image = rng.integers(0, 256, (3, 12, 12), dtype=np.uint8)
            out.put(caffe_pb2.Datum(channels=3, height=12, width=12, data=image.tobytes(),
                                    label=int(i % 4)))


def run_stock(stock, argv, cwd):
    return stock.run_caffe(argv, cwd=cwd, timeout=300).stderr


def workspace(d, net_replace=()):
    """The databases and the net in `d`; returns solver(name, template, replace) -> the path of
    a solver file for that net, snapshotting to d/name."""
    rng = np.random.default_rng(2)
    make_db(d / "train_db", 4 * ITERS_PER_EPOCH, rng)
    make_db(d / "test_db", 8, rng)  # test_iter 2 x batch 4: each test pass reads it once
    net = d / "net.prototxt"
    text = NET.replace("TRAIN_DB", str(d / "train_db")).replace("TEST_DB", str(d / "test_db"))
    for old, new in net_replace:
        assert old in text
        text = text.replace(old, new)
    net.write_text(text)

    def solver(name, template=SOLVER, replace=()):
        text = template.replace("NET", str(net)).replace("PREFIX", str(d / name))
        for old, new in replace:
            text = text.replace(old, new)
        path = d / f"{name}.solver.prototxt"
        path.write_text(text)
        return str(path)
    return solver


def initial_snapshot(stock, d, solver):
    """Stock Caffe's own iteration-0 snapshot: the weights both engines start from."""
    run_stock(stock, ["train", "-solver", solver("init", replace=[
        ("max_iter: 20", "max_iter: 0"), ("snapshot: 10", "snapshot: 0")])], d)
    return str(d / "init_iter_0.caffemodel")


@pytest.fixture(scope="module")
def runs(stock, tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    solver = workspace(d)
    monkey = pytest.MonkeyPatch()
    try:
        init = initial_snapshot(stock, d, solver)
        logs = {
            "stock": run_stock(stock, ["train", "-solver", solver("stock"), "-weights", init], d),
            "ours": run_engine(["train", "--solver", solver("ours"), "--weights=" + init], d, monkey),
        }
        logs["ours_resumed"] = run_engine(["train", "-solver", solver("ours_resumed"), "-snapshot",
                                           str(d / "stock_iter_10.solverstate")], d, monkey)
        logs["stock_resumed"] = run_stock(stock, ["train", "-solver", solver("stock_resumed"),
                                                  "-snapshot", str(d / "ours_iter_10.solverstate")], d)
        logs["stock_variant"] = run_stock(stock, ["train", "-solver", solver("stock_variant", VARIANT),
                                                  "-weights", init], d)
        logs["ours_variant"] = run_engine(["train", "-solver", solver("ours_variant", VARIANT),
                                           "-weights", init], d, monkey)
    finally:
        monkey.undo()
    return d, {name: caffe_log.parse(text) for name, text in logs.items()}, init


def assert_close_series(ours, theirs, rtol, what):
    assert ours.keys() == theirs.keys() and ours, f"{what}: iterations differ"
    for key in theirs:
        a, b = ours[key], theirs[key]
        assert abs(a - b) <= rtol * max(abs(b), 1e-3), f"{what} at {key}: {a} vs stock {b}"


def test_losses_learning_rates_and_tests_match_stock_caffe(runs):
    _, logs, _ = runs
    ours, stock = logs["ours"], logs["stock"]
    assert len(stock["loss"]) == 21  # iterations 0..19 and the final display at 20
    assert ours["lr"] == stock["lr"]  # printed as Caffe prints floats: identical text
    assert_close_series(ours["loss"], stock["loss"], RTOL, "loss")
    for iteration in (0, 10, 20):
        assert_close_series(ours["test"][iteration], stock["test"][iteration], RTOL,
                            f"test outputs at {iteration}")
    for message in ("MultiStep Status: Iteration 6, step = 1", "Optimization Done."):
        assert message in ours["messages"] and message in stock["messages"]


def test_snapshots_match_stock_caffe_and_frozen_layer_is_bit_identical(runs):
    d, _, init = runs
    for iteration in (10, 20):
        assert_models_close(d / f"ours_iter_{iteration}.caffemodel",
                            d / f"stock_iter_{iteration}.caffemodel", RTOL, exact=("pattern",))
    frozen = files.read_model(init).blobs["pattern"][0]
    for who in ("ours", "stock"):
        assert np.array_equal(files.read_model(d / f"{who}_iter_20.caffemodel").blobs["pattern"][0],
                              frozen)
    ours = assert_history_close(d / "ours_iter_20.solverstate", d / "stock_iter_20.solverstate",
                                RTOL, atol=1e-7)
    assert (ours.iter, ours.current_step) == (20, 2)
    assert len(ours.history) == 10  # learnable blobs, BatchNorm's too


def test_solver_options_match_stock_caffe(runs):
    """iter_size 2, clip_gradients, L1 decay, the step policy, average_loss 3."""
    d, logs, _ = runs
    ours, stock = logs["ours_variant"], logs["stock_variant"]
    assert ours["lr"] == stock["lr"]
    assert_close_series(ours["loss"], stock["loss"], RTOL, "smoothed loss")
    clipped = [m for m in stock["messages"] if m.startswith("Gradient clipping")]
    assert clipped and len(clipped) == len([m for m in ours["messages"]
                                            if m.startswith("Gradient clipping")])
    assert_models_close(d / "ours_variant_iter_8.caffemodel", d / "stock_variant_iter_8.caffemodel",
                        RTOL, exact=("pattern",))


def test_snapshots_cross_over_between_engines(runs):
    d, logs, _ = runs
    # the engine resumed stock Caffe's iteration-10 snapshot: it continues stock's run
    later = {i: v for i, v in logs["stock"]["loss"].items() if i >= 10}
    assert_close_series(logs["ours_resumed"]["loss"], later, RTOL, "resumed loss")
    assert_models_close(d / "ours_resumed_iter_20.caffemodel", d / "stock_iter_20.caffemodel", RTOL)
    # stock Caffe resumed the engine's iteration-10 snapshot: it continues the engine's run
    later = {i: v for i, v in logs["ours"]["loss"].items() if i >= 10}
    assert_close_series(logs["stock_resumed"]["loss"], later, RTOL, "resumed loss")
    assert_models_close(d / "stock_resumed_iter_20.caffemodel", d / "ours_iter_20.caffemodel", RTOL)


@pytest.fixture(scope="module")
def solver_runs(stock, tmp_path_factory):
    """Per solver type: 20 iterations in each engine from stock's iteration-0 snapshot, and
    each engine resuming the other's iteration-10 snapshot."""
    d = tmp_path_factory.mktemp("solvers")
    solver = workspace(d, ADAPTIVE_NET)
    monkey = pytest.MonkeyPatch()
    out = {}
    try:
        init = initial_snapshot(stock, d, solver)
        for kind, settings in SOLVERS.items():
            template = SOLVER_COMMON + settings + "\n"
            name = kind.lower()
            logs = {"stock": run_stock(stock, ["train", "-solver", solver(f"{name}_stock", template),
                                               "-weights", init], d),
                    "ours": run_engine(["train", "-solver", solver(f"{name}_ours", template),
                                        "-weights", init], d, monkey)}
            logs["ours_resumed"] = run_engine(
                ["train", "-solver", solver(f"{name}_ours_resumed", template), "-snapshot",
                 str(d / f"{name}_stock_iter_10.solverstate")], d, monkey)
            logs["stock_resumed"] = run_stock(
                stock, ["train", "-solver", solver(f"{name}_stock_resumed", template),
                        "-snapshot", str(d / f"{name}_ours_iter_10.solverstate")], d)
            out[kind] = {who: caffe_log.parse(text) for who, text in logs.items()}
    finally:
        monkey.undo()
    return d, out


@pytest.mark.parametrize("kind", sorted(SOLVERS))
def test_solver_type_matches_stock_caffe(solver_runs, kind):
    """Printed rates, losses and test outputs; iteration 10 and 20 snapshots (weights and
    history, in Caffe's layout) within RTOL of stock Caffe's."""
    d, runs = solver_runs
    ours, stock = runs[kind]["ours"], runs[kind]["stock"]
    assert len(stock["loss"]) == 21 and ours["lr"] == stock["lr"]
    assert_close_series(ours["loss"], stock["loss"], RTOL, f"{kind} loss")
    for iteration in (0, 10, 20):
        assert_close_series(ours["test"][iteration], stock["test"][iteration], RTOL,
                            f"{kind} test outputs at {iteration}")
    name = kind.lower()
    for iteration in (10, 20):
        assert_models_close(d / f"{name}_ours_iter_{iteration}.caffemodel",
                            d / f"{name}_stock_iter_{iteration}.caffemodel", RTOL, exact=("pattern",))
        state = assert_history_close(d / f"{name}_ours_iter_{iteration}.solverstate",
                                     d / f"{name}_stock_iter_{iteration}.solverstate", RTOL,
                                     atol=1e-7)
    learnable = 9  # NET without conv1's bias: conv1, bn1 x3, scale1 x2, pattern, ip x2
    assert len(state.history) == updates.UPDATE_RULES[kind].HISTORY * learnable


@pytest.mark.parametrize("kind", sorted(SOLVERS))
def test_solver_type_snapshots_cross_over(solver_runs, kind):
    d, runs = solver_runs
    name = kind.lower()
    for resumed, source in (("ours_resumed", "stock"), ("stock_resumed", "ours")):
        later = {i: v for i, v in runs[kind][source]["loss"].items() if i >= 10}
        assert_close_series(runs[kind][resumed]["loss"], later, RTOL, f"{kind} {resumed} loss")
        assert_models_close(d / f"{name}_{resumed}_iter_20.caffemodel",
                            d / f"{name}_{source}_iter_20.caffemodel", RTOL)
        assert_history_close(d / f"{name}_{resumed}_iter_20.solverstate",
                             d / f"{name}_{source}_iter_20.solverstate", RTOL, atol=1e-7)


@pytest.mark.parametrize("settings, message", [
    ('type: "AdaGrad" momentum: 0.9', "Momentum cannot be used with AdaGrad."),
    ('type: "RMSProp" rms_decay: 1', "rms_decay should lie between 0 and 1."),
    ('type: "RMSProp" momentum: 0.5', "Momentum cannot be used with RMSProp."),
    ('type: "Adagrad"', "Unknown solver type: Adagrad (known types: AdaDelta, AdaGrad, Adam, "
                        "Nesterov, RMSProp, SGD)"),
])
def test_solver_checks_refuse_what_stock_caffe_refuses(stock, tmp_path, settings, message):
    """Caffe's constructor_sanity_check and SolverRegistry lookups: stock Caffe stops with the
    message; the engine gives it as one line naming the solver file."""
    path = tmp_path / "solver.prototxt"
    path.write_text(f'net: "{REPO / "tests" / "nets" / "tiny_train.prototxt"}" base_lr: 0.1 '
                    f'lr_policy: "fixed" max_iter: 1 snapshot_prefix: "{tmp_path / "s"}" {settings}\n')
    proc = stock.run_caffe(["train", "-solver", path], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and message in proc.stderr
    with pytest.raises(UserError) as err:
        commands.main(["train", "-solver", str(path)])
    assert str(err.value) == f"{path}: {message}"
