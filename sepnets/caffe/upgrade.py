"""Every upgrade stock Caffe applies to a file while reading it (src/caffe/util/
upgrade_proto.cpp), in one place, for every reader of this toolkit (netinfo, the engine, the
pipeline, quant_pattern.py):

nets (UpgradeNetAsNeeded, upgrade_proto.cpp:23)
  - V0/V1 `layers` nets: Caffe converts them; here they are refused with a pointer to Caffe's
    upgrade_net_proto_text (require_v2);
  - the deprecated top-level `input` / `input_shape` / `input_dim` fields become a leading
    Input layer named "input" (UpgradeNetInput, :968); an `input` without shapes, as legacy
    caffemodels carry it, is only removed;
  - BatchNorm layers written for the older BatchNorm declare three `param` entries: their
    lr_mult and decay_mult become 0 (UpgradeNetBatchNorm, :1017).
solvers (ReadSolverParamsFromTextFileOrDie, :1119)
  - the deprecated `solver_type` enum becomes the `type` string (UpgradeSolverType, :1042);
  - a missing snapshot_prefix becomes the solver file's path without its extension, one that
    names a directory gets the solver's stem appended (UpgradeSnapshotPrefixProperty, :1102).

`log(tag, message)`, when given, receives Caffe's own log lines for each upgrade made (the
engine passes glog.info, so its log reads like stock Caffe's); other readers upgrade quietly.
"""
from pathlib import Path

from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError

_S = caffe_pb2.SolverParameter
SOLVER_TYPES = {_S.SGD: "SGD", _S.NESTEROV: "Nesterov", _S.ADAGRAD: "AdaGrad",
                _S.RMSPROP: "RMSProp", _S.ADADELTA: "AdaDelta", _S.ADAM: "Adam"}


def _quiet(tag, message):
    pass


# ---------------------------------------------------------------- nets

def require_v2(net, path):
    """CaffeFileError for a net in the deprecated V1 `layers` format."""
    if len(net.layers):
        raise CaffeFileError(path, "uses the deprecated V1 'layers' format; upgrade it with "
                                   "Caffe's upgrade_net_proto_text first")
    return net


def needs_input_upgrade(net):
    return len(net.input) > 0


def needs_batch_norm_upgrade(net):
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in net.layer)


def _upgrade_input(net):
    if len(net.input_shape) or len(net.input_dim):
        layer = caffe_pb2.LayerParameter(name="input", type="Input")
        for i, name in enumerate(net.input):
            layer.top.append(name)
            if len(net.input_shape):
                layer.input_param.shape.add().CopyFrom(net.input_shape[i])
            else:
                layer.input_param.shape.add().dim.extend(net.input_dim[4 * i:4 * i + 4])
        layers = [layer] + list(net.layer)
        del net.layer[:]
        net.layer.extend(layers)
    net.ClearField("input")
    net.ClearField("input_shape")
    net.ClearField("input_dim")


def _upgrade_batch_norm(net):
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0


def upgrade_net(net, source="net", log=None):
    """`net` upgraded as Caffe upgrades it while reading `source`: a new NetParameter, or `net`
    itself when nothing needs upgrading."""
    log = log or _quiet
    input_upgrade, bn_upgrade = needs_input_upgrade(net), needs_batch_norm_upgrade(net)
    if not (input_upgrade or bn_upgrade):
        return net
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    if input_upgrade:
        if len(net.input_shape) and len(net.input_shape) != len(net.input) or \
                len(net.input_dim) and len(net.input_dim) != 4 * len(net.input):
            raise CaffeFileError(source, f"{len(net.input)} input(s) but "
                                         f"{len(net.input_shape) or len(net.input_dim)} "
                                         f"input_{'shape' if len(net.input_shape) else 'dim'} "
                                         "entries (one shape, or four dims, per input)")
        log("upgrade_proto.cpp:69", "Attempting to upgrade input file specified using "
                                    f"deprecated input fields: {source}")
        _upgrade_input(upgraded)
        log("upgrade_proto.cpp:72", "Successfully upgraded file specified using deprecated "
                                    "input fields.")
    if bn_upgrade:
        log("upgrade_proto.cpp:79", "Attempting to upgrade batch norm layers using deprecated "
                                    f"params: {source}")
        _upgrade_batch_norm(upgraded)
        log("upgrade_proto.cpp:82", "Successfully upgraded batch norm layers using deprecated "
                                    "params.")
    return upgraded


# ---------------------------------------------------------------- solvers

def _is_dir(path):
    try:
        return Path(path).is_dir()
    except OSError:   # a name too long for the file system is no directory either
        return False


def upgrade_solver(param, path, log=None):
    """The solver read from `path`, upgraded in place as ReadSolverParamsFromTextFileOrDie
    does; returns it."""
    log = log or _quiet
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise CaffeFileError(path, "old solver_type field (enum) and new type field "
                                       "(string) cannot be both specified")
        log("upgrade_proto.cpp:1084", "Attempting to upgrade input file specified using "
                                      f"deprecated 'solver_type' field (enum)': {path}")
        param.type = SOLVER_TYPES[param.solver_type]
        param.ClearField("solver_type")
        log("upgrade_proto.cpp:1091", "Successfully upgraded file specified using deprecated "
                                      "'solver_type' field (enum) to 'type' field (string).")
    solver_path = Path(path)
    if not param.HasField("snapshot_prefix"):
        param.snapshot_prefix = str(solver_path.with_suffix(""))
        log("upgrade_proto.cpp:1108", "snapshot_prefix was not specified and is set to "
                                      + param.snapshot_prefix)
    elif _is_dir(param.snapshot_prefix):
        param.snapshot_prefix = str(Path(param.snapshot_prefix) / solver_path.stem)
        log("upgrade_proto.cpp:1113", "snapshot_prefix was a directory and is replaced to "
                                      + param.snapshot_prefix)
    return param
