"""The project as the tests see it: where things are, and running one of its commands (as a
process, or in this process as its script runs it)."""
import contextlib
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass

from sepnets import paths
from sepnets.errors import cli

REPO = paths.REPO
NETS = REPO / "tests" / "nets"      # the tests' own small nets
AUTHORS = paths.authors()           # the SEP-Nets authors' prototxts, solvers and log


def run_tool(*argv, cwd=None, check=False):
    """Runs a project command with the test's python; returns the CompletedProcess."""
    cmd = [sys.executable] + [str(a) for a in argv]
    return subprocess.run(cmd, cwd=cwd or REPO, capture_output=True, text=True, check=check)


def tool(name):
    """Path of a command script: quant_pattern.py at the top, the others in tools/."""
    top = REPO / name
    return top if top.exists() else REPO / "tools" / name



def workdir(root, *nets, copy=False):
    """A directory laid out like the repository (prototxt/<net>/) for the pipeline to run in:
    each net's folder linked, or copied (to change its solver)."""
    for net in nets:
        src = REPO / "prototxt" / net
        dst = root / "prototxt" / net
        dst.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copytree(src, dst)
        else:
            dst.symlink_to(src)
    return root


@dataclass
class Outcome:
    code: int
    out: str
    err: str


def run_command(main, argv):
    """Runs a command's main(argv) as its script does (sepnets.errors.cli), in this process,
    with its output captured; returns the Outcome. Other exceptions propagate: that is what
    the fuzz suite looks for."""
    out, err = io.StringIO(), io.StringIO()
    argv0 = sys.argv
    sys.argv = [getattr(main, "__module__", "cmd").rsplit(".", 1)[-1]]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli(main)(argv)
            except SystemExit as stop:
                code = stop.code
    finally:
        sys.argv = argv0
    return Outcome(0 if code is None else code, out.getvalue(), err.getvalue())


def trained_lenet(root, max_iter=20, snapshot=10):
    """A workspace in `root` with prototxt/lenet/ (its solver shortened to `max_iter`
    iterations, a snapshot every `snapshot`, one test batch), the MNIST sample's databases,
    and `pipeline.py train lenet` run once with stock Caffe. Returns (root, solver path,
    its SolverParameter)."""
    from sepnets.caffe import files
    workdir(root, "lenet", copy=True)
    solver = root / "prototxt/lenet/solver.prototxt"
    param = files.read_solver(solver)
    param.max_iter, param.snapshot, param.test_interval, param.display = max_iter, snapshot, 1000, 5
    del param.test_iter[:]
    param.test_iter.append(1)
    files.write_text(solver, param)
    assert run_tool(REPO / "tools/prepare_mnist.py", "--out-dir", "data/mnist", cwd=root).returncode == 0
    first = run_tool(REPO / "tools/pipeline.py", "train", "lenet", cwd=root)
    assert first.returncode == 0, first.stderr
    return root, solver, param
