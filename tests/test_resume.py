"""Crash-safe resuming (sepnets.caffe.snapshots): a snapshot pair cut off by a kill is moved
aside and the next older good one used, by the pipeline with stock Caffe and by the engine;
the engine's own leftovers of an interrupted snapshot are removed at start."""
import shutil

import numpy as np
import pytest

from sepnets import names
from sepnets.caffe import files, snapshots
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import commands, updates
from tests.support.models import model_for
from tests.support.project import NETS, REPO, run_command, run_tool, trained_lenet

PIPELINE = REPO / "tools" / "pipeline.py"
LENET = NETS / "engine" / "lenet.prototxt"   # Input layers: no database needed


def lenet_blobs():
    net = files.read_net(LENET)
    net.state.phase = caffe_pb2.TRAIN
    return snapshots.net_blobs(net)


def write_pair(prefix, iteration, blobs, history_per_blob=1, learned_net=None):
    """A snapshot pair of LeNet as a solver writes it: zero weights and history."""
    model = names.snapshot(prefix, iteration, "caffemodel")
    files.write_model(model, model_for(LENET, lambda shape: np.zeros(shape, np.float32), "TRAIN"))
    history = [np.zeros(shape, np.float32) for shape in blobs.learnable] * history_per_blob
    state = names.snapshot(prefix, iteration, "solverstate")
    files.write_solverstate(state, files.SolverState(iteration, learned_net or model, history))
    return state, model


def test_learnable_blobs_are_caffes_order_with_shared_blobs_once():
    blobs = lenet_blobs()
    assert blobs.learnable == [(20, 1, 5, 5), (20,), (50, 20, 5, 5), (50,), (500, 800), (500,),
                               (10, 500), (10,)]
    net = files.read_net(LENET)
    net.layer[3].param[0].name = "shared"    # conv2's weights named ...
    net.layer[1].param[0].name = "shared"    # ... like conv1's: conv1 owns, conv2 shares
    net.state.phase = caffe_pb2.TRAIN
    net.layer[3].convolution_param.num_output = 20
    net.layer[1].convolution_param.num_output = 20
    assert len(snapshots.net_blobs(net).learnable) == 7


def test_the_newest_good_pair_is_used_and_damaged_ones_moved_aside(tmp_path):
    blobs = lenet_blobs()
    prefix = tmp_path / "lenet"
    write_pair(prefix, 100, blobs)
    state200, model200 = write_pair(prefix, 200, blobs)
    cut = files.read_bytes(state200)
    state300, model300 = write_pair(prefix, 300, blobs)
    (tmp_path / state300.rsplit("/", 1)[1]).write_bytes(cut[:len(cut) * 2 // 3])  # killed mid-write
    shutil.copy(model200, model300)
    warnings = []
    assert snapshots.resume_point(prefix, blobs, "SGD", warnings.append) == (200, prefix.with_name(
        "lenet_iter_200.solverstate"))
    assert len(warnings) == 1 and "lenet_iter_300.solverstate: cannot resume" in warnings[0]
    assert "moved aside as lenet_iter_300.solverstate.damaged, lenet_iter_300.caffemodel.damaged" \
        in warnings[0]
    assert (tmp_path / "lenet_iter_300.solverstate.damaged").read_bytes() == cut[:len(cut) * 2 // 3]
    assert not (tmp_path / "lenet_iter_300.caffemodel").exists()


@pytest.mark.parametrize("damage, why", [
    ("iteration", "it holds iteration 200, its name says 300"),
    ("history", "5 history blobs; solver type SGD keeps 8 for this net"),
    ("weights", "its caffemodel: corrupt or truncated"),
    ("model", "its caffemodel models/x_iter_300.caffemodel is missing"),
    ("learned_net", "its weights are elsewhere.caffemodel"),
])
def test_each_damage_is_named(tmp_path, monkeypatch, damage, why):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    blobs = lenet_blobs()
    prefix = "models/x"
    state, model = write_pair(prefix, 300, blobs)
    history = files.read_solverstate(state).history
    if damage == "iteration":
        files.write_solverstate(state, files.SolverState(200, model, history))
    elif damage == "history":
        files.write_solverstate(state, files.SolverState(300, model, history[:5]))
    elif damage == "weights":
        data = files.read_bytes(model)
        (tmp_path / model).write_bytes(data[:len(data) // 2])
    elif damage == "model":
        (tmp_path / model).unlink()
    else:
        files.write_solverstate(state, files.SolverState(300, "elsewhere.caffemodel", history))
    warnings = []
    assert snapshots.resume_point(prefix, blobs, "SGD", warnings.append) == (None, None)  # fresh start
    assert why in warnings[0]


def test_history_count_follows_the_solver_type(tmp_path):
    """Caffe's SGD, Nesterov, AdaGrad, RMSProp keep one history blob per learnable blob,
    AdaDelta and Adam two (src/caffe/solvers/*.cpp)."""
    blobs = lenet_blobs()
    state, model = write_pair(tmp_path / "one", 10, blobs, 1)
    state2, model2 = write_pair(tmp_path / "two", 10, blobs, 2)
    for kind in ("SGD", "Nesterov", "AdaGrad", "RMSProp"):
        assert snapshots.pair_problem(state, model, blobs, kind) is None
        assert "16 history blobs" in snapshots.pair_problem(state2, model2, blobs, kind)
    for kind in ("AdaDelta", "Adam"):
        assert snapshots.pair_problem(state2, model2, blobs, kind) is None
        assert "solver type {} keeps 16 for this net".format(kind) in snapshots.pair_problem(
            state, model, blobs, kind)


def test_killed_stock_caffe_training_resumes_from_the_older_pair(stock, tmp_path):
    """The issue's reproduction: a real stock-Caffe snapshot pair, its .solverstate cut off at
    2/3 under the next iteration's name; `make train-lenet` (the pipeline) moves it aside and
    resumes from the older pair (stock Caffe alone aborts: history_size 5 vs 8)."""
    root, solver, param = trained_lenet(tmp_path)      # snapshots at 10 and 20
    models = root / "models/lenet"
    shutil.copy(models / "lenet_iter_20.caffemodel", models / "lenet_iter_30.caffemodel")
    state = (models / "lenet_iter_20.solverstate").read_bytes()
    (models / "lenet_iter_30.solverstate").write_bytes(state[:len(state) * 2 // 3])
    param.max_iter = 40
    files.write_text(solver, param)

    again = run_tool(PIPELINE, "train", "lenet", cwd=root)
    assert again.returncode == 0, again.stderr
    warning = [line for line in again.stderr.splitlines() if "lenet_iter_30.solverstate" in line]
    assert len(warning) == 1 and "cannot resume from this snapshot" in warning[0]
    assert "--snapshot models/lenet/lenet_iter_20.solverstate" in again.stdout
    assert (models / "lenet_iter_30.solverstate.damaged").read_bytes() == state[:len(state) * 2 // 3]
    assert (models / "lenet_iter_30.caffemodel.damaged").exists()
    assert (models / "lenet_iter_40.caffemodel").exists()      # stock Caffe trained on to 40
    assert files.read_solverstate(models / "lenet_iter_30.solverstate").iter == 30


ENGINE_SOLVER = """net: "NET"
base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" display: 0 max_iter: MAX
snapshot: 2 snapshot_prefix: "PREFIX" random_seed: 1
"""


def engine(argv, cwd, monkeypatch):
    """The engine's `caffe` command in this process (sepnets.errors.cli as its script runs it)."""
    monkeypatch.chdir(cwd)
    return run_command(commands.main, [str(a) for a in argv])


def engine_solver(tmp_path, max_iter, extra=""):
    path = tmp_path / "solver.prototxt"
    path.write_text(ENGINE_SOLVER.replace("NET", str(LENET)).replace("MAX", str(max_iter))
                    .replace("PREFIX", str(tmp_path / "snap")) + extra)
    return path


def test_engine_refuses_a_damaged_snapshot_in_one_line(tmp_path, monkeypatch):
    solver = engine_solver(tmp_path, 4)
    assert engine(["train", "-solver", solver], tmp_path, monkeypatch).code == 0
    state = tmp_path / "snap_iter_4.solverstate"
    data = state.read_bytes()
    state.write_bytes(data[:len(data) * 2 // 3])
    out = engine(["train", "-solver", solver, "-snapshot", state], tmp_path, monkeypatch)
    assert out.code == 2
    last = out.err.strip().splitlines()[-1]
    assert "snap_iter_4.solverstate: cannot resume from this snapshot: corrupt or truncated" in last


def test_the_check_knows_every_solver_type_the_engine_trains():
    """One rule for the history count: the engine's update rules take theirs from
    snapshots.HISTORY_PER_BLOB, which has an entry for each of them and no other."""
    assert {kind: rule.HISTORY for kind, rule in updates.UPDATE_RULES.items()} == \
        snapshots.HISTORY_PER_BLOB


def test_an_adam_snapshot_resumes_and_one_with_sgds_history_is_refused(tmp_path, monkeypatch):
    """Adam keeps two history blobs per learnable blob (adam_solver.cpp AdamPreSolve): the
    engine's Adam snapshot passes the check (the engine resumes it, the pipeline's
    resume_point picks it); the same state with one set of history blobs - what an SGD
    solver writes - is refused in one line, and moved aside by resume_point."""
    solver = engine_solver(tmp_path, 4, 'type: "Adam" momentum2: 0.999')
    assert engine(["train", "-solver", solver], tmp_path, monkeypatch).code == 0
    blobs = lenet_blobs()
    state = tmp_path / "snap_iter_2.solverstate"
    assert len(files.read_solverstate(state).history) == 2 * len(blobs.learnable)
    warnings = []
    assert snapshots.resume_point(tmp_path / "snap", blobs, "Adam", warnings.append) == (
        4, tmp_path / "snap_iter_4.solverstate") and not warnings
    out = engine(["train", "-solver", solver, "-snapshot", state], tmp_path, monkeypatch)
    assert out.code == 0 and f"Resuming from {state}" in out.err, out.err[-2000:]

    saved = files.read_solverstate(tmp_path / "snap_iter_4.solverstate")
    files.write_solverstate(tmp_path / "snap_iter_4.solverstate", files.SolverState(
        saved.iter, saved.learned_net, saved.history[:len(blobs.learnable)], saved.current_step))
    out = engine(["train", "-solver", solver, "-snapshot", tmp_path / "snap_iter_4.solverstate"],
                 tmp_path, monkeypatch)
    assert out.code == 2
    assert out.err.strip().splitlines()[-1].endswith(
        "snap_iter_4.solverstate: cannot resume from this snapshot: 8 history blobs; solver type "
        "Adam keeps 16 for this net")
    assert snapshots.resume_point(tmp_path / "snap", blobs, "Adam", warnings.append) == (2, state)
    assert len(warnings) == 1 and "moved aside as snap_iter_4.solverstate.damaged" in warnings[0]


def test_engine_removes_the_temporary_files_of_an_interrupted_snapshot(tmp_path, monkeypatch):
    """kill -9 during the engine's snapshot leaves `.snap_iter_N.caffemodel.XXXXXXXX.tmp`;
    the next training of that prefix removes them (with a warning), nothing else."""
    solver = engine_solver(tmp_path, 2)
    left = [tmp_path / (names.temp_affixes(f"snap_iter_{i}.{kind}")[0] + "abcdefgh.tmp")
            for i, kind in ((6, "caffemodel"), (6, "solverstate"))]
    others = [tmp_path / (names.temp_affixes("other_iter_6.caffemodel")[0] + "abcdefgh.tmp"),
              tmp_path / (names.temp_affixes("snap_iter_6.caffemodel.x")[0] + "abcdefgh.tmp")]
    for path in left + others:
        path.write_bytes(b"\0" * 1000)
    out = engine(["train", "-solver", solver], tmp_path, monkeypatch)
    assert out.code == 0, out.err
    assert not any(p.exists() for p in left) and all(p.exists() for p in others)
    assert sum(f"removed {p} (1,000 bytes)" in out.err for p in left) == 2
