"""Caffe's snapshots on disk: which pair a run can resume from, the damaged ones moved aside,
the temporary files an interrupted write left, and Caffe's write probe - for the pipeline
(which may run stock Caffe and imports no torch) and for the engine alike.

A snapshot is a pair `<prefix>_iter_N.solverstate` + `<prefix>_iter_N.caffemodel`
(solver.cpp:451). A training killed while snapshotting can leave either cut off under its
final name (stock Caffe writes them in place): resuming from it, stock Caffe aborts
(`Check failed: state.history_size() == history_.size()`). Before resuming, a pair is checked
as Caffe's Restore will use it:
  - both files parse (files.read_solverstate, files.read_model: one-line reasons);
  - the state's iteration is the N of its name; its learned_net, when set, is the pair's
    caffemodel (Restore loads that file, sgd_solver.cpp:301);
  - the number of history blobs is what the solver type keeps per learnable blob: one for
    SGD, Nesterov, AdaGrad and RMSProp (SGDSolver::PreSolve, sgd_solver.cpp:38), two for
    AdaDelta and Adam (AdaDeltaPreSolve / AdamPreSolve add a second set), in Caffe's
    learnable_params order (net.cpp:474 AppendParam: every owned blob, shared ones once);
  - every history blob has the size of its learnable blob, and the caffemodel's blobs fit
    the net as CopyTrainedLayersFrom checks them (count per layer, Blob::ShapeEquals).
"""
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sepnets import names
from sepnets.caffe import db, files, netstate, shapes
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError, UserError, one_line

# history blobs per learnable blob, by solver type (src/caffe/solvers/*.cpp constructors): the
# one rule; the engine's update rules (sepnets.engine.updates) take their HISTORY from it
HISTORY_PER_BLOB = {"SGD": 1, "Nesterov": 1, "AdaGrad": 1, "RMSProp": 1, "AdaDelta": 2, "Adam": 2}


@dataclass
class NetBlobs:
    """What a snapshot must fit: the learnable blobs' shapes in Caffe's learnable_params order,
    and every layer's parameter blob shapes (for the caffemodel)."""
    learnable: list
    layers: dict = field(default_factory=dict)   # layer name -> [shape, ...]


def train_net(param, solver_path):
    """The train net a solver names (net, net_param, train_net or train_net_param) with the
    TRAIN state the solver gives it (Solver::InitTrainNet, solver.cpp:79), as a NetParameter."""
    given = [f for f in ("net", "net_param", "train_net", "train_net_param") if param.HasField(f)]
    if len(given) != 1:
        raise CaffeFileError(solver_path, "specify the train net with exactly one of net, "
                                          f"net_param, train_net, train_net_param (given: {given or 'none'})")
    if param.HasField("train_net_param") or param.HasField("net_param"):
        net = caffe_pb2.NetParameter()
        net.CopyFrom(param.train_net_param if param.HasField("train_net_param") else param.net_param)
    else:
        net = files.read_net(param.train_net or param.net)
    state = caffe_pb2.NetState(phase=caffe_pb2.TRAIN)
    state.MergeFrom(net.state)
    state.MergeFrom(param.train_state)
    net.state.CopyFrom(state)
    return net


def net_blobs(net, data_shapes=db.data_layer_shapes):
    """NetBlobs of a net (its `state` says the phase, level and stages), by Caffe's shape rules."""
    filtered = netstate.filter_net(net, net.state.phase, net.state.level, list(net.state.stage))
    inferred, _ = shapes.infer(filtered, data_shapes)
    specs = {layer.name: list(layer.param) for layer in filtered.layer}
    owners, learnable, layers = set(), [], {}
    for layer in inferred:
        layers[layer.name] = list(layer.param_shapes)
        for i, shape in enumerate(layer.param_shapes):
            spec = specs[layer.name][i] if i < len(specs[layer.name]) else None
            if spec is not None and spec.name:
                if spec.name in owners:
                    continue          # shared: the owner's blob is the learnable one
                owners.add(spec.name)
            learnable.append(tuple(shape))
    return NetBlobs(learnable, layers)


def pair_problem(state_path, model_path, blobs, solver_type):
    """Why the snapshot pair cannot be resumed from, in a few words, or None when it can.
    model_path None: the state's learned_net (none: no weights to check, Restore loads none)."""
    iteration = names.snapshot_iteration(Path(state_path).name)
    try:
        state = files.read_solverstate(state_path)
    except CaffeFileError as err:
        return err.problem
    if iteration is not None and state.iter != iteration:
        return f"it holds iteration {state.iter}, its name says {iteration}"
    if model_path is None:
        model_path = state.learned_net or None
    if model_path is not None and not os.path.lexists(model_path):
        return f"its caffemodel {one_line(model_path)} is missing"
    if state.learned_net and not files.same_file(state.learned_net, model_path):
        return f"its weights are {one_line(state.learned_net)}, not {model_path}"
    per_blob = HISTORY_PER_BLOB.get(solver_type)
    if per_blob is None:
        raise UserError(f"solver type '{solver_type}' is not one of Caffe's "
                        f"({', '.join(HISTORY_PER_BLOB)})")
    want = per_blob * len(blobs.learnable)
    if len(state.history) != want:
        return (f"{len(state.history)} history blobs; solver type {solver_type} keeps {want} "
                "for this net")
    for i, (stored, shape) in enumerate(zip(state.history, blobs.learnable * per_blob)):
        if stored.size != math.prod(shape):
            return f"history blob {i} holds {stored.size} values, the net's blob {shape}"
    if model_path is None:
        return None
    try:
        model = files.read_model(model_path)
    except CaffeFileError as err:
        return f"its caffemodel: {err.problem}"
    for name, arrays in model.blobs.items():
        target = blobs.layers.get(name)
        if target is None:
            continue                  # Caffe ignores layers the net does not have
        if len(arrays) != len(target):
            return f"its caffemodel has {len(arrays)} blobs for layer '{name}', the net {len(target)}"
        for i, (array, shape) in enumerate(zip(arrays, target)):
            if not files.blob_shape_equals(array.shape, shape, (name, i) in model.legacy):
                return f"its caffemodel's layer '{name}' blob {i} is {array.shape}, the net's {shape}"
    return None


def move_aside(paths):
    """Renames each existing path to its sepnets.names.damaged name; returns the new names."""
    moved = []
    for path in paths:
        if os.path.lexists(path):
            target = names.damaged(path)
            try:
                os.rename(path, target)
            except OSError as err:
                raise UserError(f"{path}: cannot move the damaged snapshot aside: "
                                f"{err.strerror}") from None
            moved.append(target)
    return moved


def resume_point(prefix, blobs, solver_type, warn):
    """(iteration, solverstate path) of the newest snapshot pair of `prefix` a run can resume
    from, or (None, None) for a fresh start. Each damaged pair newer than it is moved aside
    (never deleted) with one `warn` line naming it and why."""
    for iteration, state in reversed(names.snapshots(prefix, "solverstate")):
        model = Path(names.snapshot(prefix, iteration, "caffemodel"))
        problem = pair_problem(state, model, blobs, solver_type)
        if problem is None:
            return iteration, state
        moved = move_aside([state, model])
        warn(f"{state}: cannot resume from this snapshot ({problem}); moved aside as "
             f"{', '.join(p.name for p in moved)}")
    return None, None


def check_resume(state_path, blobs, solver_type):
    """CaffeFileError unless the snapshot `state_path` and the caffemodel its learned_net
    names can be resumed from (what `caffe train --snapshot` is given)."""
    problem = pair_problem(state_path, None, blobs, solver_type)
    if problem:
        raise CaffeFileError(state_path, f"cannot resume from this snapshot: {problem}")


def remove_temps(prefix, warn):
    """Removes the temporary files interrupted snapshot writes of `prefix` left (hold the
    prefix's lock first: another run's write in progress looks the same)."""
    for path in names.snapshot_temps(prefix):
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        warn(f"removed {path} ({size:,} bytes), left by an interrupted snapshot")


def check_writable(prefix):
    """Caffe's CheckSnapshotWritePermissions (solver.cpp:61): the probe file
    `<prefix>_iter_0.tempfile` is created and removed - never through a symbolic link (the
    link's target would be truncated) and never on anything but a regular file."""
    probe = names.snapshot(prefix, 0, "tempfile")
    try:
        os.close(files.open_regular(probe, os.O_WRONLY | os.O_CREAT, "write the snapshot probe to"))
    except OSError as err:
        raise UserError(f"Cannot write to snapshot prefix '{prefix}'. Make sure that the directory "
                        f"exists and is writable ({err.strerror}).") from None
    os.unlink(probe)

