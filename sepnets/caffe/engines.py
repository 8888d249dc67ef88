"""`caffe test`: running it (stock Caffe or the PyTorch engine) and reading its output.

Stock Caffe's tools/caffe.cpp test() logs, through glog, for every batch i and every element
of every net output "Batch i, <output> = <value>", then "Loss: <mean loss>", then per output
element "<output> = <mean over batches>", followed by " (* <weight> = <weighted> loss)" when
the output has a loss weight. The engine (python -m sepnets.caffe) prints the same lines.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

from sepnets.caffe import stock
from sepnets.errors import UserError

ENGINES = ("caffe", "torch")
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]*\] ")
_NUMBER = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|-nan))"
_BATCH = re.compile(rf"^Batch (\d+), (.+) = {_NUMBER}$")
_LOSS = re.compile(rf"^Loss: {_NUMBER}$")
_FINAL = re.compile(rf"^(.+?) = {_NUMBER}(?: \(\* {_NUMBER} = {_NUMBER} loss\))?$")


@dataclass
class Output:
    name: str
    value: float
    loss_weight: float = 0.0


@dataclass
class TestScores:
    outputs: list                      # Output per output element, in Caffe's order
    loss: float = None                 # the "Loss:" line (mean of the net's total loss)
    batches: list = field(default_factory=list)  # per batch: [(name, value)]

    def labels(self):
        """Column names: the output name, with #k appended for elements after the first."""
        seen = {}
        out = []
        for o in self.outputs:
            k = seen.get(o.name, 0)
            seen[o.name] = k + 1
            out.append(o.name if k == 0 else f"{o.name}#{k}")
        return out

    def value(self, label):
        for name, o in zip(self.labels(), self.outputs):
            if name == label:
                return o
        raise KeyError(label)


def _float(text):
    return float("nan") if text == "-nan" else float(text)


def parse(text):
    """The scores in the output of `caffe test` (glog prefixes optional)."""
    batches = {}
    outputs = []
    loss = None
    for raw in text.splitlines():
        line = _GLOG_PREFIX.sub("", raw.rstrip())
        m = _BATCH.match(line)
        if m:
            batches.setdefault(int(m.group(1)), []).append((m.group(2), _float(m.group(3))))
            continue
        m = _LOSS.match(line)
        if m:
            loss = _float(m.group(1))
            outputs = []  # the final lines follow the Loss line
            continue
        if loss is not None:
            m = _FINAL.match(line)
            if m:
                weight = _float(m.group(3)) if m.group(3) else 0.0
                outputs.append(Output(m.group(1), _float(m.group(2)), weight))
    return TestScores(outputs, loss, [batches[i] for i in sorted(batches)])


def check_engine(engine):
    """UserError unless `engine` can run here."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}' (one of {', '.join(ENGINES)})")


def engine_command(engine):
    """argv prefix of an engine's `caffe` command line: stock Caffe's tool, or the PyTorch
    engine, which takes the same verbs and flags."""
    check_engine(engine)
    if engine == "caffe":
        return stock.caffe_command()
    return [sys.executable, "-m", "sepnets.caffe"]


def engine_env():
    """Environment for an engine's process: `python -m sepnets.caffe` from any directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stock.REPO), env.get("PYTHONPATH")]))
    return env


def command(engine, net, weights, iterations, gpu=None):
    """argv of `test` for an engine: stock Caffe's tool, or the engine with the same flags."""
    argv = engine_command(engine) + ["test", "--model", str(net), "--weights", str(weights),
                                     "--iterations", str(iterations)]
    if gpu is not None:
        argv += ["--gpu", str(gpu)]
    return argv


def run(net, weights, iterations, engine="caffe", gpu=None, cwd=None):
    """Runs `test` on the TEST phase of `net` with `weights`; returns its TestScores."""
    argv = command(engine, net, weights, iterations, gpu)
    proc = subprocess.run(argv, cwd=cwd, env=engine_env(), capture_output=True, text=True)
    log = proc.stdout + "\n" + proc.stderr
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.strip().splitlines() if line.strip()][-3:]
        raise UserError(f"{engine} test -model {net} -weights {weights} failed "
                        f"(exit {proc.returncode}): " + " | ".join(tail))
    scores = parse(log)
    if not scores.outputs:
        raise UserError(f"{engine} test -model {net}: no scores in its output (does the TEST "
                        "phase of the net have outputs such as accuracy or loss?)")
    return scores
