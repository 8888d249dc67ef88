"""The engine's `train` as several ranks on this machine's CPU (gloo), started as a user starts
them: by torchrun (`--standalone --nproc_per_node N`) or by the engine's own launcher
(sepnets.engine.launch, which `-gpu 0,1` uses on a GPU machine)."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.project import REPO

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
LAUNCHER = [sys.executable, "-c", "import sys; from sepnets.engine import launch; "
                                  "sys.exit(launch.spawn(sys.argv[2:], int(sys.argv[1])))"]


def environment(timeout=None, **extra):
    env = dict(os.environ, GLOG_minloglevel="0", TORCH_CPP_LOG_LEVEL="ERROR",
               PYTHONPATH=str(REPO), **extra)
    if timeout is not None:
        env["SEPNETS_DIST_TIMEOUT"] = str(timeout)
    return env


def torchrun(argv, ranks=2, cwd=REPO, timeout=300, env=None):
    """`torchrun --standalone --nproc_per_node ranks -m sepnets.caffe argv`, to its end."""
    cmd = TORCHRUN + ["--nproc_per_node", str(ranks), "-m", "sepnets.caffe"] + [str(a) for a in argv]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or environment())


def launch(argv, ranks=2, cwd=REPO, env=None):
    """The engine's launcher running `ranks` ranks of `sepnets.caffe argv` (a Popen)."""
    return subprocess.Popen(LAUNCHER + [str(ranks)] + [str(a) for a in argv], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or environment())


class Output:
    """A running process's stderr lines, collected on a thread."""

    def __init__(self, proc):
        self.lines = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(proc.stderr), daemon=True)
        self.thread.start()

    def wait_for(self, text, timeout=120):
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError(f"no line with {text!r}:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)

    def text(self):
        self.thread.join(timeout=60)
        return "".join(self.lines)


def rank_processes(launcher, ranks, timeout=120):
    """{rank: pid} of the launcher's children, once all have started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {}
        for child in _children(launcher.pid):
            try:
                env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"RANK="):
                    found[int(item[5:])] = child
        if len(found) == ranks:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the launcher did not start {ranks} ranks")


def _children(pid):
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children
