"""The paper's procedure on one network: train -> quantize -> fine-tune -> evaluate -> report.

Each step works on a workspace: the network's files under prototxt/<net>/, its snapshots
under models/<name>/ and its logs under logs/<name>/ (name = the net's, or e.g. "demo").
Steps print the command they run, write the full output of every Caffe run to a log
(appended, like the authors' `2>&1 | tee`), and pick up where an earlier run stopped: a
training run resumes from the newest .solverstate, and a finished one is not run again.
Either engine runs the same files: stock Caffe (default) or the PyTorch engine.
"""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sepnets import caffeio, caffetest, quant
from sepnets.bootstrap import REPO  # the toolkit's own files
from sepnets.errors import UserError



def root():
    """Where the pipeline works: the current directory (the Makefile runs it from the
    repository root). It holds prototxt/, data/, models/ and logs/, and Caffe resolves the
    prototxts' relative paths from there."""
    return Path.cwd()


def prototxt_dir():
    return root() / "prototxt"


@dataclass
class Workspace:
    name: str          # models/<name>/ and logs/<name>/
    net: str           # prototxt/<net>/
    solver: Path       # the solver training starts from

    @property
    def models(self):
        return root() / "models" / self.name

    @property
    def logs(self):
        return root() / "logs" / self.name

    @property
    def train_val(self):
        return prototxt_dir() / self.net / "train_val.prototxt"

    @property
    def deploy(self):
        return prototxt_dir() / self.net / "deploy.prototxt"

    def eval_path(self):
        return self.logs / "eval.json"


def network_names():
    return sorted(p.parent.name for p in prototxt_dir().glob("*/solver.prototxt"))


def workspace(net):
    """The workspace of a network in prototxt/ ("sepnet-small" names sepnet_small too)."""
    names = network_names()
    for candidate in (net, net.replace("-", "_")):
        if candidate in names:
            return Workspace(candidate, candidate, prototxt_dir() / candidate / "solver.prototxt")
    raise UserError(f"unknown network '{net}': prototxt/ has {', '.join(names)}")


# ---------------------------------------------------------------- snapshots

_SNAPSHOT = re.compile(r"_iter_(\d+)\.(caffemodel|solverstate)$")


def snapshots(prefix, kind):
    """[(iteration, path)] of `<prefix>_iter_N.<kind>`, oldest first."""
    prefix = Path(prefix)
    found = []
    for path in prefix.parent.glob(f"{prefix.name}_iter_*.{kind}"):
        m = _SNAPSHOT.search(path.name)
        if m and path.name == f"{prefix.name}_iter_{m.group(1)}.{kind}":
            found.append((int(m.group(1)), path))
    return sorted(found)


def newest(prefix, kind):
    found = snapshots(prefix, kind)
    return found[-1] if found else (None, None)


def solver_prefix(solver):
    """The solver's snapshot_prefix as a path (relative ones are relative to root(), where the
    steps run Caffe)."""
    return root() / caffeio.read_solver(solver).snapshot_prefix


# ---------------------------------------------------------------- running Caffe

def show(argv):
    print("+ " + " ".join(str(a) for a in argv), flush=True)


def rel(path):
    """A path relative to root() when it lies below it (symbolic links kept as they are)."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(os.path.abspath(root()))
    except ValueError:
        return path


# The solver lines worth showing on a terminal while a long run goes to its log.
PROGRESS = re.compile(r"\] (Iteration \d+.*(loss|Testing)|    Test net output|Optimization Done|"
                      r"Snapshotting to binary|Restoring previous)")


def run_logged(argv, log, quiet=False):
    """Runs argv (stderr into stdout) in root(), appending its output to `log` and
    echoing it (only the solver's progress lines with quiet=True). Raises on failure."""
    show(argv)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.Popen([str(a) for a in argv], cwd=root(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=caffetest.engine_env())
        tail = []
        for line in proc.stdout:
            out.write(line)
            tail = (tail + [line.rstrip()])[-5:]
            if not quiet or PROGRESS.search(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        rc = proc.wait()
    if rc != 0:
        raise UserError(f"{argv[0]} exited with {rc} (full output in {rel(log)}):\n" + "\n".join(tail))


def train(ws, engine="caffe", gpu=None, solver=None, weights=None, log_name="train.log", quiet=False):
    """Runs a solver to its max_iter; resumes from the newest snapshot; returns the final
    caffemodel."""
    solver = Path(solver or ws.solver)
    param = caffeio.read_solver(solver)
    prefix = solver_prefix(solver)
    prefix.parent.mkdir(parents=True, exist_ok=True)  # Caffe will not create it
    done, state = newest(prefix, "solverstate")
    if done is not None and done >= param.max_iter:
        model = Path(f"{prefix}_iter_{done}.caffemodel")
        print(f"{rel(solver)}: already trained to iteration {done} ({rel(model)})")
        return model
    argv = caffetest.engine_command(engine) + ["train", "--solver", rel(solver)]
    if state is not None:
        argv += ["--snapshot", rel(state)]
    elif weights:
        argv += ["--weights", rel(weights)]
    if gpu is not None:
        argv += ["--gpu", str(gpu)]
    run_logged(argv, ws.logs / log_name, quiet)
    final, model = newest(prefix, "caffemodel")
    if final != param.max_iter:
        raise UserError(f"{rel(solver)}: training ended without a snapshot at iteration "
                        f"{param.max_iter} (snapshot_after_train off?)")
    return model


def trained_model(ws, solver=None):
    """The newest snapshot of the training run."""
    it, model = newest(solver_prefix(solver or ws.solver), "caffemodel")
    if model is None:
        raise UserError(f"no trained snapshot of {ws.name} yet: run `make train-{ws.net}` first")
    return model


def test_iterations(solver):
    """Batches that cover the test set once: the solver's test_iter."""
    param = caffeio.read_solver(solver)
    return param.test_iter[0] if len(param.test_iter) else 50


# ---------------------------------------------------------------- quantize, fine-tune

def quantize(ws, selector, offset=None, sweep=None, engine="caffe", gpu=None, model=None,
             iterations=None, sweep_csv=None):
    """quant_pattern.py on the trained model; returns the patterned caffemodel's path."""
    model = Path(model or trained_model(ws))
    argv = [sys.executable, REPO / "quant_pattern.py", "--model", rel(model),
            *selector.argv()]
    if sweep:
        argv += ["--sweep", sweep, "--net", rel(ws.train_val), "--engine", engine,
                 "--iterations", str(iterations or test_iterations(ws.solver))]
        if gpu is not None:
            argv += ["--gpu", str(gpu)]
        if sweep_csv:
            ws.logs.mkdir(parents=True, exist_ok=True)
            argv += ["--sweep-csv", rel(sweep_csv)]
    else:
        argv += ["--offset", str(offset)]
    started = time.time()
    run_logged(argv, ws.logs / "quant.log")
    stem = model.name[:-len(".caffemodel")]
    made = [p for p in model.parent.glob(f"{stem}_quant_*.caffemodel") if p.stat().st_mtime >= started - 1]
    if not made:
        raise UserError(f"quant_pattern.py wrote no model beside {rel(model)}")
    return max(made, key=lambda p: p.stat().st_mtime)


def fix_pattern_files(ws, selector, solver=None, max_iter=None):
    """tools/fix_pattern.py into models/<name>/; returns the fine-tune solver's path."""
    solver = Path(solver or ws.solver)
    tag = selector.tag
    prefix = rel(solver_prefix(solver))
    argv = [sys.executable, REPO / "tools" / "fix_pattern.py", "--net", rel(ws.train_val),
            "--solver", rel(solver), *selector.argv(),
            "--out-dir", rel(ws.models), "--snapshot-prefix", f"{prefix}_fix_{tag}_pattern"]
    ws.models.mkdir(parents=True, exist_ok=True)
    run_logged(argv, ws.logs / "finetune.log")
    fix_solver = ws.models / f"solver_fix_{tag}_pattern.prototxt"
    if max_iter is not None:  # a shorter fine-tuning schedule (the demo's)
        param = caffeio.read_solver(fix_solver)
        param.max_iter = max_iter
        param.snapshot = max_iter
        caffeio.write_text(fix_solver, param)
    return fix_solver


def finetune(ws, selector, quantized, engine="caffe", gpu=None, max_iter=None, quiet=False):
    """Fine-tunes the patterned model with the pattern layers frozen; returns the final model."""
    fix_solver = fix_pattern_files(ws, selector, max_iter=max_iter)
    return train(ws, engine, gpu, solver=fix_solver, weights=quantized,
                 log_name="finetune.log", quiet=quiet)


# ---------------------------------------------------------------- evaluate, report

def evaluate(ws, models, engine="caffe", gpu=None, iterations=None):
    """`caffe test` on the TEST phase for each {label: caffemodel}; saved to logs/<name>/eval.json."""
    iterations = iterations or test_iterations(ws.solver)
    results = {}
    for label, model in models.items():
        argv = caffetest.command(engine, rel(ws.train_val), rel(model), iterations, gpu)
        show(argv)
        scores = caffetest.run(rel(ws.train_val), rel(model), iterations, engine, gpu, cwd=root())
        outputs = {name: o.value for name, o in zip(scores.labels(), scores.outputs)}
        print("  " + ", ".join(f"{k} = {v:.4f}" for k, v in outputs.items()))
        results[label] = {"model": str(rel(model)), "outputs": outputs}
    doc = {"net": ws.net, "engine": engine, "iterations": iterations, "models": results}
    ws.logs.mkdir(parents=True, exist_ok=True)
    caffeio.atomic_write(ws.eval_path(), json.dumps(doc, indent=1).encode())
    return doc


def check_data(ws, solver=None):
    """UserError naming the make target when a database the net reads is missing."""
    targets = {"data/mnist": "data-mnist", "data/cifar10": "data-cifar10",
               "data/imagenet": "data-imagenet"}
    for layer in caffeio.read_net(ws.train_val).layer:
        if layer.type != "Data":
            continue
        source = layer.data_param.source
        if not (root() / source).is_dir():
            target = next((t for p, t in targets.items() if source.startswith(p)), None)
            hint = f"run `make {target}` first" if target else "create it first"
            raise UserError(f"{rel(ws.train_val)}: layer '{layer.name}' reads {source}, which "
                            f"does not exist: {hint}")


def quantized_model(ws, selector, offset=None):
    """The newest patterned model of the trained snapshot for this selection (and offset)."""
    trained = trained_model(ws)
    stem = trained.name[:-len(".caffemodel")]
    tag = selector.tag
    which = quant.offset_text(float(offset)) if offset is not None else "*"
    pattern = f"{stem}_quant_{tag}_{which}.caffemodel"
    found = sorted(trained.parent.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"no patterned model {rel(trained.parent / pattern)}: run `make quant` first")
    return found[-1]


def refined_model(ws, selector):
    tag = selector.tag
    solver = ws.models / f"solver_fix_{tag}_pattern.prototxt"
    if not solver.exists():
        raise UserError(f"no fine-tuning for {selector.describe()} yet: run `make finetune` first")
    return trained_model(ws, solver)
