"""The fine-tune files for a patterned model (the paper's step 3), what tools/fix_pattern.py
writes. From a net prototxt and its solver:
  train_val_fix_<filters>_pattern.prototxt  the net with lr_mult 0 and decay_mult 0 on the
                                            weight param of exactly the layers quant_pattern.py
                                            binarizes with the same selection flags (biases
                                            keep their params, as in the authors' files);
  solver_fix_<filters>_pattern.prototxt     the solver pointing at it, base_lr * --lr-scale
                                            (0.5: the authors' 0.01 -> 0.005 for GoogLeNet)
                                            and its own snapshot_prefix,
beside the inputs, or in --out-dir.
"""
import os
from pathlib import Path

from sepnets import names
from sepnets.caffe import netstate, shapes
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import UserError


def check_net(net, path):
    """UserError for a net Caffe would refuse to build, as far as it shows without its data:
    in each phase every bottom made by an earlier layer and no top made twice
    (shapes.wiring), each layer's number of bottoms and tops (shapes.check_counts), and
    every convolution's kernel given and nonzero (shapes.conv_kernel)."""
    for phase in ("TRAIN", "TEST"):
        filtered = netstate.filter_net(net, phase)
        try:
            shapes.wiring(filtered)
            for layer in filtered.layer:
                shapes.check_counts(layer)
                if layer.type in ("Convolution", "Deconvolution"):
                    shapes.conv_kernel(layer)
        except UserError as err:
            raise UserError(f"{path} ({phase} phase): {err}") from None


def freeze(net, layer_names):
    """A copy of `net` whose layers in `layer_names` have lr_mult 0 and decay_mult 0 on
    blob 0."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    for layer in out.layer:
        if layer.name in layer_names:
            spec = layer.param[0] if len(layer.param) else layer.param.add()
            spec.lr_mult = 0
            spec.decay_mult = 0
    return out


def net_reference(new_net, original):
    """How the solver names the new net. Caffe opens it relative to where `caffe train` runs:
    the path as given here (relative to the current directory), absolute if the solver's was."""
    if original and os.path.isabs(original):
        return str(Path(new_net).resolve())
    return str(new_net)


def fine_tune_solver(solver, new_net, tag, lr_scale, snapshot_prefix=None):
    """The solver for fine-tuning with the patterns fixed."""
    out = caffe_pb2.SolverParameter()
    out.CopyFrom(solver)
    if out.HasField("train_net") or out.HasField("train_net_param"):
        original = out.train_net
        out.ClearField("train_net_param")
        out.train_net = net_reference(new_net, original)
    else:
        original = out.net
        out.ClearField("net_param")
        out.net = net_reference(new_net, original)
    out.base_lr = solver.base_lr * lr_scale
    if snapshot_prefix is None:
        snapshot_prefix = names.fine_tune_prefix(solver.snapshot_prefix or "fine_tune", tag)
    out.snapshot_prefix = snapshot_prefix
    return out


def output_paths(net_path, solver_path, tag, out_dir=None):
    """Where the fine-tune net and solver go: out_dir, or beside the inputs."""
    net_name, solver_name = names.fine_tune_net(tag), names.fine_tune_solver(tag)
    if out_dir:
        out_dir = Path(out_dir)
        return out_dir / net_name, out_dir / solver_name
    return (Path(net_path).with_name(net_name),
            Path(solver_path).with_name(solver_name) if solver_path else None)
