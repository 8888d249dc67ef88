"""One run per workspace (sepnets.caffe.runlock): a second train, quant, finetune, eval or demo
on the same net, or a second engine training on one snapshot_prefix, stops at once with one
line naming the first run's PID; the lock dies with its holder."""
import os
import signal
import subprocess
import sys
import time

import pytest

from sepnets import names
from sepnets.caffe import runlock
from sepnets.engine import commands
from tests.support.project import NETS, REPO, run_command, run_tool, workdir

PIPELINE = REPO / "tools" / "pipeline.py"
HOLD = ("import sys, time; from sepnets.caffe import runlock; "
        "held = runlock.exclusive(sys.argv[1], 'x'); held.__enter__(); print('held', flush=True); "
        "time.sleep(120)")


@pytest.fixture
def holder():
    """Starts a process holding the lock file given; yields a function doing that."""
    procs = []

    def hold(lock):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=REPO, text=True,
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc
    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("argv", [["train", "lenet"],
                                  ["quant", "lenet", "--filter", "5x5", "--offset", "0.03"],
                                  ["finetune", "lenet", "--filter", "5x5"],
                                  ["eval", "lenet", "--filter", "5x5"]])
def test_a_second_run_on_a_workspace_stops_at_once_naming_the_first(tmp_path, holder, argv):
    root = workdir(tmp_path, "lenet")
    for part in ("train", "test"):
        (root / names.mnist_db(part)).mkdir(parents=True)
    (root / "models/lenet").mkdir(parents=True)
    first = holder(root / "models/lenet" / names.WORKSPACE_LOCK)
    start = time.monotonic()
    second = run_tool(PIPELINE, *argv, cwd=root)
    assert time.monotonic() - start < 20
    assert second.returncode == 2
    assert second.stderr.strip() == (f"pipeline.py: error: models/lenet is in use by another run "
                                     f"(PID {first.pid}); wait for it to finish or stop it (lock: "
                                     f"{root}/models/lenet/{names.WORKSPACE_LOCK})")
    assert not (root / "logs").exists()       # it wrote nothing


def test_a_second_demo_stops_at_once(tmp_path, holder):
    root = workdir(tmp_path, "lenet")
    (root / "models/demo").mkdir(parents=True)
    first = holder(root / "models/demo" / names.WORKSPACE_LOCK)
    second = run_tool(PIPELINE, "demo", cwd=root)
    assert second.returncode == 2
    assert f"models/demo is in use by another run (PID {first.pid})" in second.stderr
    assert not (root / "data").exists()


SOLVER = """net: "NET"
base_lr: 0.01 lr_policy: "fixed" display: 0 max_iter: MAX snapshot: 0 snapshot_prefix: "PREFIX"
"""


def test_two_engine_trainings_on_one_snapshot_prefix(tmp_path, monkeypatch):
    """The engine's train holds its snapshot_prefix: a second training on it stops at once
    naming the first's PID (last writer no longer wins silently)."""
    long = tmp_path / "long.prototxt"
    long.write_text(SOLVER.replace("NET", str(NETS / "engine/lenet.prototxt")).replace("MAX", "100000")
                    .replace("PREFIX", str(tmp_path / "snap")))
    first = subprocess.Popen([sys.executable, REPO / "tools/caffe_torch.py", "train", "-solver", long],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock = names.snapshot_lock(tmp_path / "snap")
        for _ in range(600):
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.1)
        monkeypatch.chdir(tmp_path)
        second = run_command(commands.main, ["train", "-solver", str(long)])
        assert second.code == 2
        assert (f"snapshot prefix {tmp_path}/snap is in use by another run (PID {first.pid})"
                in second.err.strip().splitlines()[-1])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


def test_the_lock_dies_with_its_holder(tmp_path, holder):
    lock = tmp_path / "x.lock"
    first = holder(lock)
    with pytest.raises(runlock.Busy):
        with runlock.exclusive(lock, "x"):
            pass
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with runlock.exclusive(lock, "x"):       # no stale lock left by kill -9
        assert lock.read_text().strip() == str(os.getpid())
        with runlock.exclusive(lock, "x"):   # re-entrant in one process (the demo's steps)
            pass


def test_a_lock_file_that_is_a_symbolic_link_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "l.lock").symlink_to(victim)
    with pytest.raises(runlock.UserError, match="is a symbolic link"):
        with runlock.exclusive(tmp_path / "l.lock", "x"):
            pass
    assert victim.read_text() == "precious"
