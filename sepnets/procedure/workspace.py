"""A network's workspace: its files under prototxt/<net>/, its snapshots under models/<name>/
and its logs under logs/<name>/ (name = the net's, or e.g. "demo"), all in the working root
(sepnets.paths.root), and the models the steps made there, found by their names
(sepnets.names) — never by modification time."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sepnets import names, paths
from sepnets.caffe import files, runlock, upgrade
from sepnets.errors import UserError


def prototxt_dir():
    return paths.root() / "prototxt"


def rel(path):
    """A path relative to the working root when it lies below it (symbolic links kept)."""
    path = Path(os.path.abspath(path))
    try:
        return path.relative_to(os.path.abspath(paths.root()))
    except ValueError:
        return path


@dataclass
class Workspace:
    name: str          # models/<name>/ and logs/<name>/
    net: str           # prototxt/<net>/
    solver: Path       # the solver training starts from

    @property
    def models(self):
        return paths.root() / "models" / self.name

    @property
    def logs(self):
        return paths.root() / "logs" / self.name

    @property
    def train_val(self):
        return prototxt_dir() / self.net / "train_val.prototxt"

    @property
    def deploy(self):
        return prototxt_dir() / self.net / "deploy.prototxt"

    def log(self, name):
        """A file in logs/<name>/ (sepnets.names: TRAIN_LOG, EVAL_JSON, ...)."""
        return self.logs / name

    def eval_path(self):
        return self.log(names.EVAL_JSON)

    def hold(self):
        """The workspace's run lock (sepnets.caffe.runlock, models/<name>/.workspace.lock):
        train, quant, finetune, eval and demo hold it, so a second run on the same net stops
        at once instead of mixing its files with the first's."""
        files.make_dirs(self.models)
        return runlock.exclusive(self.models / names.WORKSPACE_LOCK, rel(self.models))


def network_names():
    return sorted(p.parent.name for p in prototxt_dir().glob("*/solver.prototxt"))


def workspace(net):
    """The workspace of a network in prototxt/ ("sepnet-small" names sepnet_small too)."""
    known = network_names()
    for candidate in (net, net.replace("-", "_")):
        if candidate in known:
            return Workspace(candidate, candidate, prototxt_dir() / candidate / "solver.prototxt")
    raise UserError(f"unknown network '{net}': prototxt/ has {', '.join(known)}")


# ---------------------------------------------------------------- the models it holds

def read_solver(solver):
    """A solver as Caffe reads it (its snapshot_prefix defaulted as Caffe does)."""
    return upgrade.upgrade_solver(files.read_solver(solver), solver)


def solver_prefix(solver):
    """The solver's snapshot_prefix as a path (relative ones are relative to the root, where
    the steps run Caffe)."""
    return paths.root() / read_solver(solver).snapshot_prefix


def newest(prefix, kind):
    """(iteration, path) of the newest `<prefix>_iter_N.<kind>`, or (None, None)."""
    found = names.snapshots(prefix, kind)
    return found[-1] if found else (None, None)


def trained_model(ws, solver=None):
    """The newest snapshot of the training run."""
    _, model = newest(solver_prefix(solver or ws.solver), "caffemodel")
    if model is None:
        raise UserError(f"no trained snapshot of {ws.name} yet: run `make train-{ws.net}` first")
    return model


def test_iterations(solver):
    """Batches that cover the test set once: the solver's test_iter."""
    param = files.read_solver(solver)
    return param.test_iter[0] if len(param.test_iter) else 50


def record_quantized(ws, selector, trained, model, offset):
    """Notes which patterned model `make quant` made last for this selection (logs/<name>/
    quant_<filters>.json), so that finetune and eval use that one."""
    doc = {"trained": str(rel(trained)), "model": str(rel(model)),
           "offset": names.offset_text(offset)}
    files.make_dirs(ws.logs)
    files.atomic_write(ws.log(names.quant_record(selector.tag)),
                       (json.dumps(doc, indent=1) + "\n").encode())


def quantized_model(ws, selector, offset=None):
    """The patterned model of the newest trained snapshot: with `offset`, the one of that
    offset; without, the one the last `make quant` made for this selection."""
    trained = trained_model(ws)
    if offset is not None:
        model = names.quantized_model(trained, selector.tag, float(offset))
        if not model.exists():
            raise UserError(f"no patterned model {rel(model)}: run `make quant OFFSET={offset}` "
                            "first")
        return model
    record = ws.log(names.quant_record(selector.tag))
    if not record.exists():
        raise UserError(f"no patterned model for {selector.describe()} yet ({rel(record)} is "
                        "missing): run `make quant` first")
    try:
        doc = json.loads(files.read_bytes(record))
        if not isinstance(doc.get("model"), str):
            raise ValueError("no model")
    except (ValueError, AttributeError):
        raise UserError(f"{rel(record)}: not a record of `make quant`; remove it and run "
                        "`make quant` again") from None
    if doc.get("trained") != str(rel(trained)):
        raise UserError(f"{rel(record)}: the last patterned model was made from "
                        f"{doc.get('trained')}, not from the newest snapshot {rel(trained)}: "
                        "run `make quant` again (or name one with OFFSET=)")
    model = paths.root() / doc["model"]
    if not model.exists():
        raise UserError(f"{rel(record)} names {doc['model']}, which does not exist: run "
                        "`make quant` again")
    return model


def refined_model(ws, selector):
    """The newest snapshot of the fine-tuning with this selection's patterns fixed."""
    solver = ws.models / names.fine_tune_solver(selector.tag)
    if not solver.exists():
        raise UserError(f"no fine-tuning for {selector.describe()} yet: run `make finetune` first")
    return trained_model(ws, solver)
