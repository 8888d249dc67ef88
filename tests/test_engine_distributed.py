"""Data-parallel training on 2 CPU ranks (gloo) against Caffe 1.0's multi-GPU rule and stock
Caffe: N ranks at batch B are one process at batch B with iter_size N over the same records
(the ranks read alternate records of the stream; their gradients are averaged before the
update), started by torchrun and by the engine's launcher.

- LeNet (a frozen lr_mult 0 layer, momentum, weight decay, a multistep rate, tests on rank
  0): 20 iterations of 2 ranks equal the engine and stock Caffe at iter_size 2 — weights and
  momentum within 1e-5 of the engine's (5e-5 of stock's), the frozen layer bit-identical, the
  printed learning rates identical, each line printed once;
- the authors' ResNet-20 (BatchNorm): weights equal stock Caffe's iter_size 2 run whose two
  sub-batches are the two ranks' batches (BatchNorm local to each), and the saved BatchNorm
  statistics are rank 0's (its last batch replayed from the previous snapshot);
- snapshots cross world sizes: 2 ranks resume stock Caffe's iter_size 2 snapshot and stock
  Caffe resumes the 2 ranks' one, each continuing the other's run;
- a rank killed mid-run ends the other with one line naming it, within the timeout;
- rank 0 alone holds the snapshot prefix's lock: the ranks train, a second training of the
  prefix is refused.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sepnets import names
from sepnets.caffe import files, glog
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import commands
from sepnets.engine.net import Net, net_state
from tests.support import caffe_log
from tests.support import distributed as ranks
from tests.support.nets import with_data_layer
from tests.support.project import NETS, REPO, run_command
from tests.support.training import assert_history_close, assert_models_close, run_engine, write_db

B = 4  # batch per rank
ITERS_PER_EPOCH = 10  # 2 ranks x B x 10 = 80 records: a resumed run starts on the same batch
RTOL_ENGINE = 1e-5  # 2 ranks against the engine at iter_size 2 (summation order only)
RTOL_STOCK = 5e-5   # against stock Caffe, as tests/test_engine_train.py

SOLVER = """net: "NET"
base_lr: 0.01 momentum: 0.9 weight_decay: 0.0005
lr_policy: "multistep" gamma: 0.5 stepvalue: 7 stepvalue: 14
display: 1 max_iter: 20 iter_size: ITER_SIZE
test_interval: 10 test_iter: 2
snapshot: 10 snapshot_prefix: "PREFIX"
random_seed: 1
"""


def lenet_with_data(path, train_db, test_db):
    """Caffe's LeNet (tests/nets/engine/lenet.prototxt) on Data layers, conv2 frozen
    (lr_mult 0, decay_mult 0) as the paper's fine-tuning freezes its patterns."""
    lenet = files.read_net(NETS / "engine" / "lenet.prototxt")
    net = caffe_pb2.NetParameter(name=lenet.name)
    for phase, source in ((caffe_pb2.TRAIN, train_db), (caffe_pb2.TEST, test_db)):
        data = net.layer.add(name="data", type="Data", top=["data", "label"])
        data.include.add(phase=phase)
        data.transform_param.scale = 0.00390625
        data.data_param.source, data.data_param.batch_size = str(source), B
        data.data_param.backend = caffe_pb2.DataParameter.LMDB
    net.layer.extend(layer for layer in lenet.layer if layer.type != "Input")
    conv2 = next(layer for layer in net.layer if layer.name == "conv2")
    for spec in conv2.param:
        spec.lr_mult, spec.decay_mult = 0, 0
    files.write_text(path, net)
    return path


def solver(d, name, net, iter_size=1, template=SOLVER, replace=()):
    text = (template.replace("NET", str(net)).replace("PREFIX", str(d / name))
            .replace("ITER_SIZE", str(iter_size)))
    for old, new in replace:
        text = text.replace(old, new)
    path = d / f"{name}.solver.prototxt"
    path.write_text(text)
    return path


def ranks_log(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.fixture(scope="module")
def lenet(stock, tmp_path_factory):
    d = tmp_path_factory.mktemp("distributed_lenet")
    rng = np.random.default_rng(4)
    count = 2 * B * ITERS_PER_EPOCH
    write_db(d / "train_db", rng.integers(0, 256, (count, 1, 28, 28), dtype=np.uint8),
             np.arange(count) % 10)
    write_db(d / "test_db", rng.integers(0, 256, (2 * B, 1, 28, 28), dtype=np.uint8),
             np.arange(2 * B) % 10)
    net = lenet_with_data(d / "lenet.prototxt", d / "train_db", d / "test_db")
    monkey = pytest.MonkeyPatch()
    logs = {}
    try:
        # the weights every run starts from: the engine's fillers with random_seed 1, which
        # rank 0 draws too (rank 1 draws with seed 2 and gets rank 0's by the broadcast)
        run_engine(["train", "-solver", solver(d, "init", net, replace=[
            ("max_iter: 20", "max_iter: 0"), ("snapshot: 10", "snapshot: 0")])], d, monkey)
        init = d / "init_iter_0.caffemodel"
        logs["engine"] = run_engine(["train", "-solver", solver(d, "engine", net, 2),
                                     "-weights", init], d, monkey)
    finally:
        monkey.undo()
    logs["stock"] = stock.run_caffe(["train", "-solver", solver(d, "stock", net, 2), "-weights",
                                     init], cwd=d, timeout=300).stderr
    logs["ranks"] = ranks_log(ranks.torchrun(["train", "-solver", solver(d, "ranks", net)], cwd=d))
    # a 1-process snapshot resumed by 2 ranks; a 2-rank snapshot resumed by 1 process
    logs["ranks_resumed"] = ranks_log(ranks.torchrun(
        ["train", "-solver", solver(d, "ranks_resumed", net), "-snapshot",
         d / "stock_iter_10.solverstate"], cwd=d))
    logs["stock_resumed"] = stock.run_caffe(
        ["train", "-solver", solver(d, "stock_resumed", net, 2), "-snapshot",
         d / "ranks_iter_10.solverstate"], cwd=d, timeout=300).stderr
    return d, init, logs, {name: caffe_log.parse(text) for name, text in logs.items()}


def test_two_ranks_equal_one_process_at_iter_size_2(lenet):
    d, init, logs, parsed = lenet
    ours, engine, stock = parsed["ranks"], parsed["engine"], parsed["stock"]
    for iteration in (10, 20):
        assert_models_close(d / f"ranks_iter_{iteration}.caffemodel",
                            d / f"engine_iter_{iteration}.caffemodel", RTOL_ENGINE, exact=("conv2",))
        assert_history_close(d / f"ranks_iter_{iteration}.solverstate",
                             d / f"engine_iter_{iteration}.solverstate", RTOL_ENGINE)
        assert_models_close(d / f"ranks_iter_{iteration}.caffemodel",
                            d / f"stock_iter_{iteration}.caffemodel", RTOL_STOCK, exact=("conv2",))
        assert_history_close(d / f"ranks_iter_{iteration}.solverstate",
                             d / f"stock_iter_{iteration}.solverstate", RTOL_STOCK)
    frozen = files.read_model(init).blobs["conv2"]
    for mine, start in zip(files.read_model(d / "ranks_iter_20.caffemodel").blobs["conv2"], frozen):
        assert np.array_equal(mine, start)
    assert len(ours["lr"]) == 20 and ours["lr"] == engine["lr"] == stock["lr"]
    for iteration in (0, 10, 20):  # rank 0 tests: its test net sees the averaged weights
        for name, value in stock["test"][iteration].items():
            assert abs(ours["test"][iteration][name] - value) <= RTOL_STOCK * max(abs(value), 1)


def test_rank_0_alone_logs_each_line_once_and_the_effective_batch(lenet):
    _, _, logs, parsed = lenet
    messages = parsed["ranks"]["messages"]
    assert [m for m in messages if m.startswith("Data parallel:")] == [
        "Data parallel: 2 ranks (gloo), batch 4 per rank x iter_size 1: effective batch 8"]
    for line in ("Iteration 7, lr = 0.005", "Solving LeNet", "Optimization Done.",
                 "Iteration 10, Testing net (#0)"):
        assert messages.count(line) == (2 if line == "Optimization Done." else 1), line
    assert "Snapshotting to binary proto file" in logs["ranks"]
    assert sum(m.startswith("Snapshotting to binary") for m in messages) == 2  # at 10 and 20


def test_snapshots_resume_across_world_sizes(lenet):
    d, _, _, parsed = lenet
    # 2 ranks resumed stock Caffe's (1 process, iter_size 2) iteration-10 state
    assert_models_close(d / "ranks_resumed_iter_20.caffemodel", d / "stock_iter_20.caffemodel",
                        RTOL_STOCK, exact=("conv2",))
    assert_history_close(d / "ranks_resumed_iter_20.solverstate", d / "stock_iter_20.solverstate",
                         RTOL_STOCK)
    later = {i: v for i, v in parsed["stock"]["lr"].items() if i >= 10}
    assert parsed["ranks_resumed"]["lr"] == later
    # stock Caffe (1 process) resumed the 2 ranks' iteration-10 state
    assert_models_close(d / "stock_resumed_iter_20.caffemodel", d / "ranks_iter_20.caffemodel",
                        RTOL_STOCK, exact=("conv2",))
    assert_history_close(d / "stock_resumed_iter_20.solverstate", d / "ranks_iter_20.solverstate",
                         RTOL_STOCK)


# ---------------------------------------------------------------- BatchNorm (ResNet-20)
RESNET_SOLVER = """net: "NET"
base_lr: 0.05 momentum: 0.9 weight_decay: 0.0001 lr_policy: "fixed"
display: 1 max_iter: MAX_ITER iter_size: ITER_SIZE
snapshot: 5 snapshot_prefix: "PREFIX"
random_seed: 1
"""
RESNET_ITERS = 6


@pytest.fixture(scope="module")
def resnet(stock, authors, tmp_path_factory):
    d = tmp_path_factory.mktemp("distributed_resnet")
    rng = np.random.default_rng(6)
    count = 2 * B * RESNET_ITERS
    images = rng.integers(0, 256, (count, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, count)
    write_db(d / "stream_db", images, labels)
    # the order in which one process at iter_size 2 reads, per iteration, rank 0's batch
    # (stream records 0, 2, 4, ...) and then rank 1's (1, 3, 5, ...)
    order = np.arange(count).reshape(RESNET_ITERS, B, 2).transpose(0, 2, 1).reshape(-1)
    write_db(d / "by_rank_db", images[order], labels[order])
    transform = caffe_pb2.TransformationParameter(scale=0.0078125, mean_value=[128])
    src = authors / "resnet20_relu_msra_cifar10.prototxt"
    nets = {name: with_data_layer(src, d / f"{name}.prototxt", d / f"{name}_db", B, transform)
            for name in ("stream", "by_rank")}

    def resnet_solver(name, net, iter_size=1, max_iter=RESNET_ITERS):
        return solver(d, name, net, iter_size, RESNET_SOLVER, [
            ("MAX_ITER", str(max_iter)), ("snapshot: 5", f"snapshot: {5 if max_iter else 0}")])

    monkey = pytest.MonkeyPatch()
    try:
        run_engine(["train", "-solver", resnet_solver("init", nets["stream"], max_iter=0)], d, monkey)
    finally:
        monkey.undo()
    init = d / "init_iter_0.caffemodel"
    stock.run_caffe(["train", "-solver", resnet_solver("stock", nets["by_rank"], 2), "-weights",
                     init], cwd=d, timeout=300)
    # the engine as one process on one rank's share of the cores: the ranks' arithmetic
    share = sorted(os.sched_getaffinity(0))[:max(1, len(os.sched_getaffinity(0)) // 2)]
    engine = subprocess.run([sys.executable, "-m", "sepnets.caffe", "train", "-solver",
                             resnet_solver("engine", nets["by_rank"], 2), "-weights", init],
                            cwd=REPO, capture_output=True, text=True, timeout=300,
                            preexec_fn=lambda: os.sched_setaffinity(0, share))
    assert engine.returncode == 0, engine.stderr[-3000:]
    proc = ranks.launch(["train", "-solver", resnet_solver("ranks", nets["stream"])], cwd=d)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return d, nets, images, labels


def batchnorm_layers(model):
    return [layer.name for layer in model.net.layer if layer.type == "BatchNorm"]


def test_batchnorm_net_follows_caffes_rule_with_local_statistics(resnet):
    """Weights and momentum: those of one process at iter_size 2 on the same cores' share
    (the same arithmetic: observed bit-identical) and, within the rounding of a BatchNorm
    net on another thread count, stock Caffe's."""
    d, _, _, _ = resnet
    ours, engine, ref = (files.read_model(d / f"{who}_iter_{RESNET_ITERS}.caffemodel")
                         for who in ("ranks", "engine", "stock"))
    start = files.read_model(d / "init_iter_0.caffemodel")
    statistics = set(batchnorm_layers(ref))
    compared = set()
    for layer, blobs in ref.blobs.items():
        if layer in statistics:
            continue  # stock's saw both sub-batches; the ranks' are rank 0's (next test)
        for mine, same, theirs, first in zip(ours.blobs[layer], engine.blobs[layer], blobs,
                                             start.blobs[layer]):
            mine, same, first = (a.reshape(theirs.shape) for a in (mine, same, first))
            err = np.max(np.abs(mine - same))
            assert err <= RTOL_ENGINE * np.max(np.abs(same)) + 1e-7, f"{layer}: {err}"
            # stock: within 2% of how far 6 updates moved the blob (observed up to 0.4%)
            err = np.max(np.abs(mine - theirs))
            assert err <= 2e-2 * np.max(np.abs(theirs - first)) + 1e-7, f"{layer}: {err} (stock)"
        compared.add(layer)
    assert statistics and compared == set(ref.blobs) - statistics
    assert {"conv1", "score"} <= compared
    assert_history_close(d / f"ranks_iter_{RESNET_ITERS}.solverstate",
                         d / f"engine_iter_{RESNET_ITERS}.solverstate", RTOL_ENGINE)


def test_saved_batchnorm_statistics_are_rank_0s(resnet):
    """From the iteration-5 snapshot, rank 0's batch of iteration 5 gives the saved
    statistics of iteration 6; rank 1's batch gives others."""
    d, nets, images, labels = resnet
    saved = files.read_model(d / f"ranks_iter_{RESNET_ITERS}.caffemodel")
    errors = {}
    glog.configure(min_level=2)
    try:
        for rank in (0, 1):
            batch = [((RESNET_ITERS - 1) * B + j) * 2 + rank for j in range(B)]
            write_db(d / f"replay{rank}_db", images[batch], labels[batch])
            path = d / f"replay{rank}.prototxt"
            path.write_text(nets["stream"].read_text().replace(str(d / "stream_db"),
                                                               str(d / f"replay{rank}_db")))
            net = Net(net_state(files.read_net(path), "TRAIN"), source=str(path))
            net.copy_trained_layers_from(str(d / f"ranks_iter_{RESNET_ITERS - 1}.caffemodel"))
            net.forward(grad=False)
            replayed = net.to_model()
            net.close()
            errors[rank] = max(
                float(np.max(np.abs(mine - theirs)) / np.max(np.abs(theirs)))
                for layer in batchnorm_layers(saved)
                for mine, theirs in zip(replayed.blobs[layer], saved.blobs[layer]))
    finally:
        glog.configure(min_level=0)
    assert errors[0] <= 1e-5 and errors[1] > 1e-3, errors


# ---------------------------------------------------------------- faults
def test_a_killed_rank_ends_the_other_with_one_line_within_the_timeout(lenet):
    d, _, _, _ = lenet
    net = d / "lenet.prototxt"
    timeout = 6
    path = solver(d, "killed", net, replace=[("max_iter: 20", "max_iter: 1000000"),
                                             ("snapshot: 10", "snapshot: 0")])
    proc = ranks.launch(["train", "-solver", path], env=ranks.environment(timeout))
    output = ranks.Output(proc)
    output.wait_for("] Iteration 0 (")  # both ranks have joined and train
    os.kill(ranks.rank_processes(proc, 2)[1], signal.SIGKILL)
    killed = time.monotonic()
    proc.wait(timeout=60)
    took = time.monotonic() - killed
    stderr = output.text()
    errors = [line for line in stderr.splitlines() if "error" in line]
    assert errors == ["sepnets.caffe: error: rank 1 stopped: no sign of life for 6 s "
                      "(SEPNETS_DIST_TIMEOUT): its process ended or stalled; rank 0 of 2 ends"]
    assert proc.returncode == 137  # the killed rank's status: the first failure
    assert "Traceback" not in stderr
    assert timeout - 1 <= took <= timeout + 5, took


def test_signals_reach_every_rank_through_rank_0(lenet):
    """SIGHUP, then SIGINT, sent to the launcher: rank 0 snapshots, then every rank stops at
    the same iteration (rank 0 snapshots it) and all leave together, status 0."""
    d, _, _, _ = lenet
    path = solver(d, "signalled", d / "lenet.prototxt", replace=[
        ("max_iter: 20", "max_iter: 1000000"), ("snapshot: 10", "snapshot: 0"),
        ("test_interval: 10", "test_interval: 50")])
    proc = ranks.launch(["train", "-solver", path])
    output = ranks.Output(proc)
    output.wait_for("] Iteration 0 (")
    proc.send_signal(signal.SIGHUP)
    output.wait_for("Snapshotting solver state")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, output.text()[-3000:]
    messages = caffe_log.parse(output.text())["messages"]
    snapshots = [m for m in messages if m.startswith("Snapshotting to binary proto file")]
    assert len(snapshots) == 2 and "Optimization stopped early." in messages
    assert messages.count("Optimization Done.") == 1  # caffe.cpp's: the tool's last line


def test_rank_0_alone_holds_the_snapshot_prefix(lenet, monkeypatch):
    """One training per snapshot prefix (sepnets.caffe.runlock): of 2 ranks training on one
    prefix, rank 0, which writes the snapshots, holds the lock and rank 1 trains beside it;
    a second, independent training of that prefix stops at once naming rank 0's PID."""
    d, _, _, _ = lenet
    path = solver(d, "locked", d / "lenet.prototxt", replace=[
        ("max_iter: 20", "max_iter: 1000000"), ("snapshot: 10", "snapshot: 0"),
        ("test_interval: 10", "test_interval: 50")])
    proc = ranks.launch(["train", "-solver", path])
    try:
        output = ranks.Output(proc)
        output.wait_for("] Iteration 0 (")   # both ranks joined and train: rank 1 was not refused
        holder = ranks.rank_processes(proc, 2)[0]
        lock = names.snapshot_lock(d / "locked")
        assert lock.read_text().strip() == str(holder)
        monkeypatch.chdir(d)
        second = run_command(commands.main, ["train", "-solver", str(path)])
        assert second.code == 2
        assert second.err.strip().splitlines()[-1].endswith(  # after the program's name
            f": error: snapshot prefix {d / 'locked'} is in use by another run (PID "
            f"{holder}); wait for it to finish or stop it (lock: {lock})")
        assert proc.poll() is None           # the ranks train on
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, output.text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stalled_rank_ends_the_other_with_one_line_within_the_timeout(lenet):
    """SIGSTOP freezes rank 1 (its monitor too): rank 0 names it within the timeout."""
    d, _, _, _ = lenet
    timeout = 6
    path = solver(d, "stalled", d / "lenet.prototxt", replace=[
        ("max_iter: 20", "max_iter: 1000000"), ("snapshot: 10", "snapshot: 0")])
    proc = ranks.launch(["train", "-solver", path], env=ranks.environment(timeout))
    output = ranks.Output(proc)
    output.wait_for("] Iteration 0 (")
    pids = ranks.rank_processes(proc, 2)
    os.kill(pids[1], signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        output.wait_for("sepnets.caffe: error:", timeout=timeout + 10)
        took = time.monotonic() - stopped
    finally:
        os.kill(pids[1], signal.SIGKILL)  # a stopped process ends only so
    proc.wait(timeout=60)
    errors = [line for line in output.text().splitlines() if "error" in line]
    assert errors == ["sepnets.caffe: error: rank 1 stopped: no sign of life for 6 s "
                      "(SEPNETS_DIST_TIMEOUT): its process ended or stalled; rank 0 of 2 ends"]
    assert timeout - 1 <= took <= timeout + 5, took
