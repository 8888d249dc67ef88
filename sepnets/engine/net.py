"""A Caffe net on torch: Caffe's Net::Init, Forward, Backward and weight I/O.

Built from a NetParameter whose `state` holds the phase/level/stages (Caffe's Net(param)):
upgraded as Caffe upgrades it (sepnets.caffe.upgrade), filtered by the layers' include/exclude
rules (sepnets.caffe.netstate.filter_net), shapes inferred with Caffe's rules
(sepnets.caffe.shapes), layers created in order.

Caffe semantics kept here:
- blobs by name; an in-place layer (top named like its bottom) replaces the blob, so later
  layers read the new value; a blob feeding several layers gets the sum of their gradients
  (Caffe's Split layers; torch's autograd sums them too);
- loss = sum over tops of loss_weight * sum(top); loss layers weigh their first top 1 unless
  loss_weight says otherwise; any layer's top may carry a loss_weight;
- parameter blobs follow their ParamSpec: lr_mult/decay_mult, and sharing by `name` (the
  first layer naming a blob owns it; later layers use the owner's blob, shapes checked
  strictly or, with share_mode PERMISSIVE, by count); `learnable` lists the owned blobs in
  Caffe's learnable_params order, the order of .solverstate history blobs;
- a blob with lr_mult 0 gets no gradient (Caffe skips its diff); propagate_down: false
  stops the gradient into that bottom; force_backward computes every gradient;
- outputs: blobs no later layer consumes, sorted by name (Caffe keeps them in a std::set).
"""
from dataclasses import dataclass

import numpy as np
import torch

from sepnets.caffe import files, glog, netstate, shapes, upgrade
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import device as devices
from sepnets.engine import fusion, layers
from sepnets.engine.memory import check as check_memory
from sepnets.errors import CaffeFileError, UserError


@dataclass
class Step:
    """One layer in the net: its bottom and top blob names and the weights of its tops."""
    layer: layers.Layer
    bottoms: list
    tops: list
    loss_weights: list
    propagate: list  # per bottom: False where propagate_down stops the gradient


@dataclass
class Learnable:
    """An owned parameter blob with its multipliers (Caffe's params_lr / params_weight_decay)."""
    tensor: torch.Tensor
    layer: str
    index: int
    lr_mult: float = 1.0
    decay_mult: float = 1.0
    has_lr: bool = False
    has_decay: bool = False


def _shape_text(shape):
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    return " ".join(str(d) for d in shape) + (" " if shape else "") + f"({count})"


def net_state(param, phase, level=0, stages=()):
    """`param` with the state Caffe's Net(file, phase, level, stages) sets."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(param)
    out.state.phase = netstate.phase_value(phase)
    out.state.stage.extend(stages)
    out.state.level = level
    return out


class Net:
    def __init__(self, param, device=None, seed=-1, source="<net>", fuse=True):
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.source = str(source)
        param = upgrade.upgrade_net(param, self.source, glog.info)
        state = param.state
        filtered = netstate.filter_net(param, state.phase, state.level)
        for layer in filtered.layer:
            if not layer.HasField("phase"):
                layer.phase = state.phase
        glog.info("net.cpp:53", "Initializing net from parameters: \n"
                  + files.format_text(filtered))
        if filtered.debug_info:
            glog.warning(None, "debug_info is not supported by the engine; ignored")
        self.name = filtered.name
        self.phase = state.phase
        self.force_backward = filtered.force_backward
        self.channels_last = devices.prefers_channels_last(self.device)
        generator = torch.Generator()
        if seed >= 0:
            generator.manual_seed(seed)
        ctx = layers.BuildContext(self.device, generator, seed, self.channels_last,
                                  self.force_backward)
        for layer_param in filtered.layer:  # before shape inference: the engine's own message
            layers.check_type(layer_param)
        inferred, _ = shapes.infer(filtered, data_shapes=layers.source_shapes)
        check_memory(inferred, self.device, self.phase == caffe_pb2.TRAIN, self.source)
        self.steps = []
        self.layers = {}
        self.blob_shapes = {}
        self.learnable = []
        self._owners = {}  # param name -> its owner's Learnable
        self.loss_weights = {}  # blob name -> loss weight of its last writer (Caffe's)
        self.inputs = []  # names of Input layers' tops (Caffe's net inputs)
        available = []  # tops no later layer has consumed yet: in the end, the outputs
        memory = 0
        with torch.no_grad():
            for layer_param, inferred_layer in zip(filtered.layer, inferred):
                memory = self._add_layer(layer_param, inferred_layer, ctx, available, memory)
        self._set_requires_grad()
        # one step per Caffe layer (what `time` reports layer by layer); `steps` is what
        # forward runs: the same layers with the fusions applied
        self.layer_steps = list(self.steps)
        if fuse:
            self.steps = fusion.optimize(self.steps, _replacement_step)
        self.outputs = sorted(set(available))
        for name in self.outputs:
            glog.info("net.cpp:244", f"This network produces output {name}")
        glog.info("net.cpp:257", "Network initialization done.")
        self.blobs = {}
        self._input_leaves = {}

    @classmethod
    def from_file(cls, path, phase="TEST", level=0, stages=(), weights=None, device=None,
                  seed=-1, fuse=True):
        """Caffe's Net(file, phase, level, stages), with weights copied in if given."""
        net = cls(net_state(files.read_net(path), phase, level, stages), device, seed, path,
                  fuse)
        for model in ([weights] if isinstance(weights, str) else weights or []):
            net.copy_trained_layers_from(model)
        return net

    # ---------------------------------------------------------------- building
    def _add_layer(self, layer_param, inferred, ctx, available, memory):
        """Caffe's per-layer Init: connect, set up, log, register parameters. Returns the
        running count of top values (Caffe's 'Memory required for data')."""
        self._check_bottoms(layer_param)
        glog.info("layer_factory.hpp:77", f"Creating layer {layer_param.name}")
        bottom_shapes = [self.blob_shapes[b] for b in layer_param.bottom]
        layer = layers.create(layer_param, bottom_shapes, inferred, ctx)
        self._log_connections(layer_param, available)
        weights = self._loss_weights(layer)
        glog.info("net.cpp:124", f"Setting up {layer.name}")
        for name, shape, w in zip(layer_param.top, layer.top_shapes, weights):
            self.blob_shapes[name] = tuple(shape)
            self.loss_weights[name] = w
            glog.info("net.cpp:131", f"Top shape: {_shape_text(shape)}")
            if w:
                glog.info("net.cpp:134", f"    with loss weight {glog.number(w)}")
            memory += int(np.prod(shape, dtype=np.int64))
        glog.info("net.cpp:139", f"Memory required for data: {memory * 4}")
        if layer_param.type == "Input":
            self.inputs.extend(layer_param.top)
        self._append_params(layer)
        propagate = list(layer_param.propagate_down) or [True] * len(layer_param.bottom)
        if len(propagate) != len(layer_param.bottom):
            raise UserError(f"layer '{layer.name}': propagate_down must be given either 0 or "
                            "bottom_size times")
        if self.force_backward:
            propagate = [True] * len(propagate)  # Caffe's force_backward overrides it
            failure = layer.force_backward_failure()
            if failure:
                raise UserError(f"layer '{layer.name}' ({layer.TYPE}): force_backward makes "
                                f"stock Caffe stop here ({failure}); remove force_backward")
        for index in layer.no_gradient_bottoms():
            if index < len(propagate):
                propagate[index] = False  # Caffe never back-propagates into these bottoms
        self.steps.append(Step(layer, list(layer_param.bottom), list(layer_param.top), weights,
                               propagate))
        self.layers[layer.name] = layer
        return memory

    def _check_bottoms(self, layer_param):
        for i, name in enumerate(layer_param.bottom):
            if name not in self.blob_shapes:
                raise UserError(f"{self.source}: unknown bottom blob '{name}' (layer "
                                f"'{layer_param.name}', bottom index {i})")
        for i, name in enumerate(layer_param.top):
            in_place = i < len(layer_param.bottom) and layer_param.bottom[i] == name
            if name in self.blob_shapes and not in_place:
                raise UserError(f"{self.source}: top blob '{name}' produced by multiple sources "
                                f"(layer '{layer_param.name}')")

    def _log_connections(self, layer_param, available):
        glog.info("net.cpp:86", f"Creating Layer {layer_param.name}")
        for name in layer_param.bottom:
            glog.info("net.cpp:408", f"{layer_param.name} <- {name}")
            if name in available:
                available.remove(name)
        for i, name in enumerate(layer_param.top):
            if i < len(layer_param.bottom) and layer_param.bottom[i] == name:
                glog.info("net.cpp:369", f"{layer_param.name} -> {name} (in-place)")
            else:
                glog.info("net.cpp:382", f"{layer_param.name} -> {name}")
            available.append(name)

    @staticmethod
    def _loss_weights(layer):
        given = [float(np.float32(w)) for w in layer.param.loss_weight]
        if not given and layer.IS_LOSS:
            given = [1.0]  # Caffe's LossLayer adds one weight, for its first top
        tops = len(layer.param.top)
        if given and len(given) != tops:
            raise UserError(f"layer '{layer.name}': loss_weight must be unspecified or "
                            f"specified once per top blob ({tops} tops, {len(given)} weights)")
        return given or [0.0] * tops

    def _append_params(self, layer):
        specs = layer.param.param
        if len(specs) > len(layer.blobs):
            raise UserError(f"layer '{layer.name}': too many params specified "
                            f"({len(specs)} for {len(layer.blobs)} blobs)")
        default = caffe_pb2.ParamSpec()
        for i, blob in enumerate(layer.blobs):
            spec = specs[i] if i < len(specs) else default
            owner = self._owners.get(spec.name) if spec.name else None
            if owner is None:
                entry = Learnable(blob, layer.name, i, float(np.float32(spec.lr_mult)),
                                  float(np.float32(spec.decay_mult)), spec.HasField("lr_mult"),
                                  spec.HasField("decay_mult"))
                self.learnable.append(entry)
                if spec.name:
                    self._owners[spec.name] = entry
                continue
            self._share(layer, i, spec, owner)

    def _share(self, layer, index, spec, owner):
        mine, theirs = layer.blobs[index], owner.tensor
        where = (f"cannot share param '{spec.name}' owned by layer '{owner.layer}' with layer "
                 f"'{layer.name}'")
        if spec.share_mode == caffe_pb2.ParamSpec.PERMISSIVE:
            if mine.numel() != theirs.numel():
                raise UserError(f"{where}; count mismatch ({tuple(theirs.shape)} vs "
                                f"{tuple(mine.shape)})")
        elif mine.shape != theirs.shape:
            raise UserError(f"{where}; shape mismatch ({tuple(theirs.shape)} vs "
                            f"{tuple(mine.shape)})")
        glog.info("net.cpp:467", f"Sharing parameters '{spec.name}' owned by layer "
                                 f"'{owner.layer}', param index {owner.index}")
        layer.blobs[index] = theirs
        for attr, has in (("lr_mult", "has_lr"), ("decay_mult", "has_decay")):
            if spec.HasField(attr):
                value = float(np.float32(getattr(spec, attr)))
                if getattr(owner, has) and getattr(owner, attr) != value:
                    raise UserError(f"shared param '{spec.name}' has mismatched {attr}")
                setattr(owner, attr, value)
                setattr(owner, has, True)

    def _set_requires_grad(self):
        for entry in self.learnable:
            entry.tensor.requires_grad_(self.force_backward or entry.lr_mult != 0)

    # ---------------------------------------------------------------- running
    def set_input(self, name, array):
        """Fills the Input layer top `name` (Caffe: net.blobs[name].data[...] = array)."""
        for layer in self.layers.values():
            if layer.TYPE == "Input" and name in layer.param.top:
                layer.set(list(layer.param.top).index(name), array)
                return
        raise UserError(f"the net has no input named '{name}' (inputs: {', '.join(self.inputs)})")

    def set_input_arrays(self, data, labels):
        """pycaffe's Net.set_input_arrays: the arrays the first layer, a MemoryData layer,
        hands out batch by batch (MemoryDataLayer::Reset)."""
        first = self.steps[0].layer if self.steps else None
        if first is None or first.TYPE != "MemoryData":
            raise UserError("set_input_arrays may only be called if the first layer is a "
                            "MemoryDataLayer")
        first.reset(data, labels)

    def forward(self, grad=None):
        """Runs every layer; returns the loss (a 0-axis tensor). grad: build the autograd
        graph (default: in TRAIN nets and force_backward nets)."""
        if grad is None:
            grad = self.phase == caffe_pb2.TRAIN or self.force_backward
        with torch.set_grad_enabled(grad):
            return self._forward()

    def _forward(self):
        blobs = self.blobs = {}
        self._input_leaves = {}
        loss = torch.zeros((), device=self.device)
        for step in self.steps:
            bottoms = [blobs[name] if keep else blobs[name].detach()
                       for name, keep in zip(step.bottoms, step.propagate)]
            tops = step.layer.forward(bottoms)
            if self.channels_last and step.layer.MAKES_DATA:
                tops = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                        for t in tops]
            if self.force_backward and step.layer.TYPE == "Input" and torch.is_grad_enabled():
                tops = [t.detach().requires_grad_(True) for t in tops]
                self._input_leaves.update(zip(step.tops, tops))
            for name, top, weight in zip(step.tops, tops, step.loss_weights):
                blobs[name] = top
                if weight:
                    loss = loss + weight * top.sum()
        return loss

    def backward(self, loss, top_diffs=None):
        """Back-propagates `loss` (and, like setting output diffs in pycaffe, `top_diffs`:
        {blob name: array}) into the parameters' gradients, which accumulate."""
        tensors, grads = [], []
        if loss.requires_grad:
            tensors.append(loss)
            grads.append(torch.ones_like(loss))
        for name, diff in (top_diffs or {}).items():
            if not self.blobs[name].requires_grad:
                continue  # a blob nothing learnable or differentiable made, e.g. Accuracy's
            tensors.append(self.blobs[name])
            grads.append(torch.as_tensor(np.asarray(diff, np.float32), device=self.device))
        if tensors:
            torch.autograd.backward(tensors, grads)

    def forward_backward(self):
        loss = self.forward(grad=True)
        self.backward(loss)
        return float(loss.detach())

    def clear_param_diffs(self):
        for entry in self.learnable:
            entry.tensor.grad = None

    def blob_count(self, name):
        return int(np.prod(self.blob_shapes[name], dtype=np.int64))

    def output(self, name):
        """A blob's values after forward, as a numpy array."""
        return self.blobs[name].detach().cpu().numpy()

    def output_values(self):
        """(name, value) for every value of every output blob, in Caffe's output order."""
        return [(name, value) for name in self.outputs for value in self.output(name).reshape(-1)]

    def loss_note(self, name, value):
        """Caffe's " (* w = w*v loss)" after an output value whose blob carries a loss weight."""
        weight = self.loss_weights.get(name, 0.0)
        if not weight:
            return ""
        return f" (* {glog.number(weight)} = {glog.number(np.float32(weight) * value)} loss)"

    def input_diff(self, name):
        """The gradient of an Input top after backward in a force_backward net."""
        leaf = self._input_leaves.get(name)
        if leaf is None or leaf.grad is None:
            return np.zeros(self.blob_shapes[name], np.float32)
        return leaf.grad.cpu().numpy()

    def param_diffs(self, layer_name):
        layer = self.layers[layer_name]
        return [np.zeros(layer.blob_shapes[i], np.float32) if b.grad is None
                else b.grad.reshape(layer.blob_shapes[i]).cpu().numpy()
                for i, b in enumerate(layer.blobs)]

    def params(self, layer_name):
        layer = self.layers[layer_name]
        return [layer.blob(i).detach().cpu().numpy() for i in range(len(layer.blobs))]

    def close(self):
        for layer in self.layers.values():
            if hasattr(layer, "close"):
                layer.close()

    # ---------------------------------------------------------------- weights
    def copy_trained_layers_from(self, model, path=None):
        """Caffe's CopyTrainedLayersFrom: blobs of layers with the same name, checked."""
        if not isinstance(model, files.Model):
            path = model
            model = files.read_model(model)
        where = path or "caffemodel"
        with torch.no_grad():
            for source in model.layers():
                layer = self.layers.get(source.name)
                if layer is None:
                    glog.info("net.cpp:678", f"Ignoring source layer {source.name}")
                    continue
                arrays = model.blobs.get(source.name, [])
                if len(arrays) != len(layer.blobs):
                    raise CaffeFileError(where, f"incompatible number of blobs for layer "
                                                f"'{source.name}': {len(arrays)} stored, "
                                                f"{len(layer.blobs)} in the net")
                for i, array in enumerate(arrays):
                    shape = layer.blob_shapes[i]
                    legacy = (source.name, i) in model.legacy
                    if not files.blob_shape_equals(array.shape, shape, legacy):
                        raise CaffeFileError(where, f"cannot copy param {i} weights from layer "
                                                    f"'{source.name}'; shape mismatch. Source "
                                                    f"param shape is {tuple(array.shape)}; "
                                                    f"target param shape is {shape}")
                    target = layer.blob(i)
                    target.copy_(torch.from_numpy(np.ascontiguousarray(array, np.float32))
                                 .reshape(shape))

    def to_model(self):
        """The net's layers and blobs as a files.Model (what Caffe's snapshot writes)."""
        model = files.Model(caffe_pb2.NetParameter(name=self.name))
        for layer in self.layers.values():
            model.net.layer.add().CopyFrom(layer.param)
            if layer.blobs:
                model.blobs[layer.name] = [layer.blob(i).detach().cpu().numpy().copy()
                                           for i in range(len(layer.blobs))]
        return model

    def share_trained_layers_with(self, other):
        """Caffe's ShareTrainedLayersWith: layers named alike use `other`'s blobs."""
        for name, source in other.layers.items():
            layer = self.layers.get(name)
            if layer is None:
                continue
            if len(layer.blobs) != len(source.blobs):
                raise UserError(f"incompatible number of blobs for layer '{name}'")
            for i, blob in enumerate(source.blobs):
                if source.blob_shapes[i] != layer.blob_shapes[i]:
                    raise UserError(f"cannot share param {i} weights from layer '{name}'; shape "
                                    f"mismatch: {source.blob_shapes[i]} vs {layer.blob_shapes[i]}")
                layer.blobs[i] = blob


def _replacement_step(layer, step, tops=None, loss_weights=None):
    return Step(layer, step.bottoms, step.tops if tops is None else tops,
                step.loss_weights if loss_weights is None else loss_weights, step.propagate)
