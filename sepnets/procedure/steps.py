"""The paper's procedure on one workspace, step by step: train -> quantize -> fine-tune ->
evaluate -> plot (what the Makefile's targets run).

Each step prints the command it runs, writes the full output of every run to a log in
logs/<name>/ (appended, like the authors' `2>&1 | tee`, never through a symbolic link) and
picks up where an earlier run stopped: a training run resumes from the newest snapshot pair
that survives sepnets.caffe.snapshots' check (a damaged one, e.g. cut off by a kill during a
snapshot, is moved aside as `.damaged`), and a finished one is not run again. Each step holds
the workspace's lock (one run per workspace; sepnets.caffe.runlock). Either engine runs the
same files: stock Caffe (default) or the PyTorch engine. The commands are the user's own
(quant_pattern.py, tools/fix_pattern.py, caffe train/test, tools/plot_log.py), and every
output is asked for by its name (sepnets.names).
"""
import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

from sepnets import names
from sepnets.caffe import engines, files, runlock, snapshots
from sepnets.errors import ProgramFailed, UserError, one_line
from sepnets.paths import REPO, root
from sepnets.procedure.workspace import (
    read_solver,
    record_quantized,
    rel,
    solver_prefix,
    test_iterations,
    trained_model,
)

# ---------------------------------------------------------------- running commands


def show(argv):
    print("+ " + " ".join(str(a) for a in argv), flush=True)


def warn(message):
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


# The solver lines worth showing on a terminal while a long run goes to its log.
PROGRESS = re.compile(r"\] (Iteration \d+.*(loss|Testing)|    Test net output|Optimization Done|"
                      r"Snapshotting to binary|Restoring previous)")


def run_logged(argv, log, quiet=False):
    """Runs argv (stderr into stdout) in the root, appending its output to `log` and echoing
    it (only the solver's progress lines with quiet=True). Raises on failure."""
    show(argv)
    files.make_dirs(log.parent)
    with files.open_append(log) as out:
        proc = subprocess.Popen([str(a) for a in argv], cwd=root(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=engines.engine_env())
        tail = []
        try:
            for line in proc.stdout:
                out.write(line)
                tail = (tail + [line.rstrip()])[-5:]
                if not quiet or PROGRESS.search(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
        except KeyboardInterrupt:
            # Ctrl-C reached the child too: Caffe stops (and snapshots) by itself; its last
            # lines still go to the log
            out.writelines(proc.stdout)
            proc.wait()
            raise
        except BaseException:
            proc.terminate()  # never leave a run writing into the workspace after we let go
            proc.wait()
            raise
        rc = proc.wait()
    if rc != 0:
        raise ProgramFailed(f"{argv[0]} exited with {rc} (full output in {rel(log)}):", tail)


def tool(script, *args):
    """argv of one of the toolkit's own scripts (quant_pattern.py, tools/*.py)."""
    return [sys.executable, REPO / script, *args]


# ---------------------------------------------------------------- train

def train(ws, engine="caffe", gpu=None, solver=None, weights=None, log_name=names.TRAIN_LOG,
          quiet=False):
    """Runs a solver to its max_iter; resumes from the newest snapshot that survives the
    check of sepnets.caffe.snapshots (damaged newer ones are moved aside); returns the final
    caffemodel. Holds the workspace's lock, and with stock Caffe (which takes none) the
    snapshot prefix's lock the engine would take."""
    with ws.hold():
        solver = Path(solver or ws.solver)
        param = read_solver(solver)
        prefix = solver_prefix(solver)
        files.make_dirs(prefix.parent)  # Caffe will not create it
        prefix_lock = runlock.exclusive(names.snapshot_lock(prefix), f"snapshot prefix {rel(prefix)}") \
            if engine == "caffe" else contextlib.nullcontext()
        with prefix_lock:
            if param.snapshot:   # Caffe's own probe would write through a link there
                snapshots.check_writable(prefix)
            done, state = resume_point(prefix, param, solver)
            if done is not None and done >= param.max_iter:
                model = Path(names.snapshot(prefix, done, "caffemodel"))
                print(f"{rel(solver)}: already trained to iteration {done} ({rel(model)})")
                return model
            argv = engines.engine_command(engine) + ["train", "--solver", rel(solver)]
            if state is not None:
                argv += ["--snapshot", rel(state)]
            elif weights:
                argv += ["--weights", rel(weights)]
            if gpu is not None:
                argv += ["--gpu", str(gpu)]
            run_logged(argv, ws.log(log_name), quiet)
        model = Path(names.snapshot(prefix, param.max_iter, "caffemodel"))
        if not model.exists():
            raise UserError(f"{rel(solver)}: training ended without a snapshot at iteration "
                            f"{param.max_iter} (snapshot_after_train off?)")
        return model


def resume_point(prefix, param, solver):
    """(iteration, solverstate) to resume from (sepnets.caffe.snapshots.resume_point), or
    (None, None)."""
    if not names.snapshots(prefix, "solverstate"):
        return None, None
    blobs = snapshots.net_blobs(snapshots.train_net(param, solver))
    return snapshots.resume_point(prefix, blobs, param.type or "SGD", warn)


def check_data(ws):
    """UserError naming the make target when a database the net reads is missing."""
    for layer in files.read_net(ws.train_val).layer:
        if layer.type != "Data":
            continue
        source = layer.data_param.source
        if not (root() / source).is_dir():
            target = next((t for d, t in names.DATA_TARGETS.items()
                           if source.startswith(d + "/")), None)
            hint = f"run `make {target}` first" if target else "create it first"
            raise UserError(f"{rel(ws.train_val)}: layer '{layer.name}' reads {source}, which "
                            f"does not exist: {hint}")


# ---------------------------------------------------------------- quantize, fine-tune

def kept_offset(sweep_csv):
    """The offset a sweep kept: the row of its CSV (quant_pattern.py --sweep-csv) marked best."""
    text = files.read_bytes(sweep_csv).decode("utf-8", "replace")
    rows = list(csv.reader(io.StringIO(text)))
    kept = [row[0] for row in rows[1:] if row and row[-1] == "1"]
    if len(kept) != 1 or not rows or not rows[0] or rows[0][-1] != "best":
        raise UserError(f"{rel(sweep_csv)}: not a sweep table with one kept offset")
    try:
        return float(kept[0])
    except ValueError:
        raise UserError(f"{rel(sweep_csv)}: the kept offset {kept[0]!r} is not a number") from None


def quantize(ws, selector, offset=None, sweep=None, engine="caffe", gpu=None, model=None,
             iterations=None):
    """quant_pattern.py on the trained model (one offset, or a sweep that keeps the best);
    returns the patterned caffemodel's path."""
    with ws.hold():
        return _quantize(ws, selector, offset, sweep, engine, gpu, model, iterations)


def _quantize(ws, selector, offset, sweep, engine, gpu, model, iterations):
    trained = Path(model or trained_model(ws))
    argv = tool("quant_pattern.py", "--model", rel(trained), *selector.argv())
    if sweep:
        table = ws.log(names.SWEEP_CSV)
        files.make_dirs(ws.logs)
        argv += ["--sweep", sweep, "--net", rel(ws.train_val), "--engine", engine,
                 "--iterations", str(iterations or test_iterations(ws.solver)),
                 "--sweep-csv", rel(table)]
        if gpu is not None:
            argv += ["--gpu", str(gpu)]
    else:
        argv += ["--offset", str(offset),
                 "--output", rel(names.quantized_model(trained, selector.tag, offset))]
    run_logged(argv, ws.log(names.QUANT_LOG))
    if sweep:
        offset = kept_offset(table)
    output = names.quantized_model(trained, selector.tag, offset)
    if not output.exists():
        raise UserError(f"quant_pattern.py did not write {rel(output)}")
    record_quantized(ws, selector, trained, output, offset)
    return output


def fix_pattern_files(ws, selector, solver=None, max_iter=None):
    """tools/fix_pattern.py into models/<name>/; returns the fine-tune solver's path."""
    solver = Path(solver or ws.solver)
    prefix = rel(solver_prefix(solver))
    argv = tool("tools/fix_pattern.py", "--net", rel(ws.train_val), "--solver", rel(solver),
                *selector.argv(), "--out-dir", rel(ws.models),
                "--snapshot-prefix", names.fine_tune_prefix(prefix, selector.tag))
    files.make_dirs(ws.models)
    run_logged(argv, ws.log(names.FINETUNE_LOG))
    fix_solver = ws.models / names.fine_tune_solver(selector.tag)
    if max_iter is not None:  # a shorter fine-tuning schedule (the demo's)
        param = files.read_solver(fix_solver)
        param.max_iter = max_iter
        param.snapshot = max_iter
        files.write_text(fix_solver, param)
    return fix_solver


def finetune(ws, selector, quantized, engine="caffe", gpu=None, max_iter=None, quiet=False):
    """Fine-tunes the patterned model with the pattern layers frozen; returns the final model."""
    with ws.hold():
        fix_solver = fix_pattern_files(ws, selector, max_iter=max_iter)
        return train(ws, engine, gpu, solver=fix_solver, weights=quantized,
                     log_name=names.FINETUNE_LOG, quiet=quiet)


# ---------------------------------------------------------------- evaluate, plot

def evaluate(ws, models, engine="caffe", gpu=None, iterations=None):
    """`caffe test` on the TEST phase for each {label: caffemodel}; saved to logs/<name>/eval.json."""
    with ws.hold():
        return _evaluate(ws, models, engine, gpu, iterations)


def _evaluate(ws, models, engine, gpu, iterations):
    iterations = iterations or test_iterations(ws.solver)
    results = {}
    for label, model in models.items():
        show(engines.command(engine, rel(ws.train_val), rel(model), iterations, gpu))
        scores = engines.run(rel(ws.train_val), rel(model), iterations, engine, gpu, cwd=root())
        outputs = {name: o.value for name, o in zip(scores.labels(), scores.outputs)}
        print("  " + ", ".join(f"{k} = {v:.4f}" for k, v in outputs.items()))
        results[label] = {"model": str(rel(model)), "outputs": outputs}
    doc = {"net": ws.net, "engine": engine, "iterations": iterations, "models": results}
    files.make_dirs(ws.logs)
    files.atomic_write(ws.eval_path(), json.dumps(doc, indent=1).encode())
    return doc


def plot(ws, metric=None):
    """tools/plot_log.py on the training and fine-tuning logs: curves.png and the CSV tables."""
    logs = [ws.log(name) for name in (names.TRAIN_LOG, names.FINETUNE_LOG)
            if ws.log(name).exists()]
    if not logs:
        raise UserError(f"no logs in {rel(ws.logs)}: train {ws.net} first")
    out = ws.log(names.CURVES_PNG)
    argv = tool("tools/plot_log.py", *map(rel, logs), "-o", rel(out),
                "--csv", rel(ws.log(names.CURVES_CSV)))
    if metric:
        argv += ["--metric", metric]
    run_logged(argv, ws.log(names.PLOT_LOG))
    return out
