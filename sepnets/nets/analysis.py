"""Per-layer shapes, parameter counts, MACs and model sizes of a Caffe net.

Parameter kinds: convolution weights by kernel (1x1, 3x3, 5x5, 7x7, other kxk), fully
connected weights, biases, BatchNorm/Scale blobs (BatchNorm's mean, variance and factor are
stored in the caffemodel, so they count), other. Sizes in MB (10^6 bytes) for three storage
conventions:
  R   every blob float32;
  B   kxk convolution weights (k>1) as 1 bit each + one float32 scale per output filter,
      everything else float32 (the paper's pattern networks, SEP-Net-B);
  BQ  B, with every other blob linearly quantized to 8 bits + a float32 minimum and step
      per blob (SEP-Net-BQ).
The main path is what the net's final output needs; layers only feeding other outputs
(GoogLeNet's auxiliary classifiers) are reported apart.
"""
import math
from dataclasses import dataclass, field

from sepnets.caffe import files, netstate, shapes
from sepnets.caffe.db import data_layer_shapes
from sepnets.errors import UserError

KINDS = ("1x1", "3x3", "5x5", "7x7", "other kxk", "fc", "bias", "bn/scale", "other")
CONV_TYPES = ("Convolution", "Deconvolution")
NORM_TYPES = ("BatchNorm", "Scale", "Bias")
MB = 1e6


def blob_kind(layer, index):
    """The parameter kind of blob `index` of a LayerShapes."""
    if layer.type in CONV_TYPES:
        if index > 0:
            return "bias"
        k = layer.kernel
        if len(k) == 2 and k[0] == k[1] and f"{k[0]}x{k[1]}" in KINDS:
            return f"{k[0]}x{k[1]}"
        return "1x1" if math.prod(k) == 1 else "other kxk"
    if layer.type == "InnerProduct":
        return "fc" if index == 0 else "bias"
    if layer.type in NORM_TYPES:
        return "bn/scale"
    return "other"


def is_kxk_conv(layer):
    """A convolution whose kernel has more than one tap: the paper's pattern layers."""
    return layer.type in CONV_TYPES and math.prod(layer.kernel) > 1


def storage_bytes(layers, is_pattern=is_kxk_conv):
    """{'R', 'B', 'BQ'} bytes for the parameter blobs of `layers` (LayerShapes)."""
    r = b = bq = 0
    for layer in layers:
        for i, shape in enumerate(layer.param_shapes):
            n = math.prod(shape)
            r += 4 * n
            if i == 0 and is_pattern(layer):
                packed = math.ceil(n / 8) + 4 * shape[0]
                b += packed
                bq += packed
            else:
                b += 4 * n
                bq += n + 8
    return {"R": r, "B": b, "BQ": bq}


def main_path(layers, output=None):
    """Names of the layers the final output needs (or those `output`, a blob name, needs)."""
    if not layers:
        return set()
    if output is None:
        start = len(layers) - 1
        needed = set(layers[start].bottoms)
        chosen = {layers[start].name}
    else:
        producers = [i for i, layer in enumerate(layers) if output in layer.tops]
        if not producers:
            raise UserError(f"--output: no layer makes a blob named '{output}'")
        start = producers[-1]
        needed = {output}
        chosen = set()
    for layer in reversed(layers[:start + 1]):
        if layer.name in chosen or needed.intersection(layer.tops):
            chosen.add(layer.name)
            needed.difference_update(layer.tops)
            needed.update(layer.bottoms)
    # Other outputs computed from main-path blobs alone (the final loss beside the final
    # accuracy) belong to the main path too; heads with layers of their own do not.
    consumed = {b for layer in layers for b in layer.bottoms}
    made_by_main = {t for layer in layers if layer.name in chosen for t in layer.tops}
    for layer in layers:
        if (layer.name not in chosen and layer.bottoms and not consumed.intersection(layer.tops)
                and made_by_main.issuperset(layer.bottoms)):
            chosen.add(layer.name)
    return chosen


@dataclass
class NetInfo:
    path: str
    phase: str
    layers: list                     # LayerShapes of the filtered net, in order
    main: set                        # names of main-path layers
    blob_shapes: dict
    shared: set = field(default_factory=set)  # (layer, index) of blobs shared with an earlier layer

    def param_layers(self, main_only=True):
        return [layer for layer in self.layers
                if layer.param_shapes and (layer.name in self.main or not main_only)]

    def counts(self, main_only=True):
        """{kind: parameter count}, shared blobs counted once."""
        out = dict.fromkeys(KINDS, 0)
        for layer in self.param_layers(main_only):
            for i, shape in enumerate(layer.param_shapes):
                if (layer.name, i) not in self.shared:
                    out[blob_kind(layer, i)] += math.prod(shape)
        return out

    def total(self, main_only=True):
        return sum(self.counts(main_only).values())

    def macs(self, main_only=True):
        batch = self._batch()
        return sum(layer.macs for layer in self.layers if layer.name in self.main or not main_only) // batch

    def _batch(self):
        for layer in self.layers:
            if layer.top_shapes and layer.top_shapes[0]:
                return max(layer.top_shapes[0][0], 1)
        return 1

    def sizes(self, main_only=True, is_pattern=is_kxk_conv):
        unique = []
        for layer in self.param_layers(main_only):
            keep = [s for i, s in enumerate(layer.param_shapes) if (layer.name, i) not in self.shared]
            if len(keep) == len(layer.param_shapes):
                unique.append(layer)
            else:
                unique.append(shapes.LayerShapes(layer.name, layer.type, layer.bottoms, layer.tops,
                                                 layer.top_shapes, keep, layer.macs, layer.kernel))
        return storage_bytes(unique, is_pattern)

    def to_json(self, is_pattern=is_kxk_conv):
        return {
            "net": self.path,
            "phase": self.phase,
            "layers": [{"name": layer.name, "type": layer.type, "bottoms": layer.bottoms, "tops": layer.tops,
                        "top_shapes": [list(s) for s in layer.top_shapes],
                        "param_shapes": [list(s) for s in layer.param_shapes],
                        "params": layer.param_count, "macs": layer.macs, "main": layer.name in self.main}
                       for layer in self.layers],
            "params": {"main": self.counts(True), "total_main": self.total(True),
                       "all": self.counts(False), "total_all": self.total(False)},
            "macs_per_image": self.macs(True),
            "size_bytes": self.sizes(True, is_pattern),
            "size_bytes_all": self.sizes(False, is_pattern),
        }


def _shared_blobs(net, layers):
    """(layer, index) of parameter blobs that reuse an earlier layer's blob (ParamSpec name)."""
    seen = set()
    shared = set()
    specs = {layer.name: layer.param for layer in net.layer}
    for layer in layers:
        for i, spec in enumerate(specs.get(layer.name, [])[:len(layer.param_shapes)]):
            if spec.name:
                if spec.name in seen:
                    shared.add((layer.name, i))
                seen.add(spec.name)
    return shared


def analyze(net_or_path, phase="TEST", level=0, stages=(), data_shapes=None, output=None):
    """NetInfo for a prototxt path or a NetParameter.

    data_shapes: {layer or top name: shape tuple} overriding what Data layers read from their
    databases.
    """
    if isinstance(net_or_path, str) or hasattr(net_or_path, "__fspath__"):
        path = str(net_or_path)
        net = files.read_net(path)
    else:
        path, net = "<net>", net_or_path
    filtered = netstate.filter_net(net, phase, level, stages)

    def data_shape(layer):
        given = data_shapes or {}
        if layer.name in given or (layer.top and layer.top[0] in given):
            top = tuple(given.get(layer.name, given.get(layer.top[0])))
            return [top] + [(top[0],)] * (len(layer.top) - 1)
        return data_layer_shapes(layer)

    try:
        layers, blob_shapes = shapes.infer(filtered, data_shape)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    phase_name = phase if isinstance(phase, str) else {0: "TRAIN", 1: "TEST"}[phase]
    return NetInfo(path, phase_name.upper(), layers, main_path(layers, output), blob_shapes,
                   _shared_blobs(filtered, layers))


def check_weights(info, model):
    """Problems loading `model` into the net as Caffe's CopyTrainedLayersFrom would see them.

    Returns (errors, notes): errors stop Caffe (blob count or shape mismatch); notes are
    what Caffe passes over (source layers it ignores, net layers left at their fillers).
    """
    errors, notes = [], []
    by_name = {layer.name: layer for layer in info.layers}
    for name, blobs in model.blobs.items():
        target = by_name.get(name)
        if target is None:
            notes.append(f"weights layer '{name}' is not in the net (Caffe ignores it)")
            continue
        if len(blobs) != len(target.param_shapes):
            errors.append(f"layer '{name}': {len(blobs)} blobs in the weights, the net has "
                          f"{len(target.param_shapes)}")
            continue
        for i, (blob, want) in enumerate(zip(blobs, target.param_shapes)):
            if not files.blob_shape_equals(blob.shape, want, (name, i) in model.legacy):
                errors.append(f"layer '{name}' blob {i}: weights have shape "
                              f"{tuple(blob.shape)}, the net expects {tuple(want)}")
    for layer in info.layers:
        if layer.param_shapes and layer.name not in model.blobs:
            notes.append(f"net layer '{layer.name}' has no weights in the model (keeps its filler values)")
    return errors, notes


def _fmt_shape(shape):
    return "x".join(str(d) for d in shape) if shape else "scalar"


def format_report(info, is_pattern=is_kxk_conv, pattern_note=""):
    rows = []
    for layer in info.layers:
        out = " ".join(_fmt_shape(s) for s in layer.top_shapes) or "-"
        mark = "" if layer.name in info.main else "aux"
        rows.append((layer.name, layer.type, out, f"{layer.param_count:,}", f"{layer.macs:,}", mark))
    head = ("layer", "type", "output", "params", "MACs", "")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = [f"{info.path} ({info.phase})"]

    def fmt(row):  # names left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    lines.append(fmt(head))
    lines += [fmt(r) for r in rows]
    main_counts = info.counts(True)
    total = info.total(True)
    aux = info.total(False) - total
    lines.append("")
    lines.append(f"parameters (main path): {total:,}" +
                 (f"   (+ {aux:,} in layers off the main path)" if aux else ""))
    for kind in KINDS:
        if main_counts[kind]:
            lines.append(f"  {kind:<10} {main_counts[kind]:>12,}  {100 * main_counts[kind] / total:5.1f}%")
    pattern = sum(main_counts[k] for k in ("3x3", "5x5", "7x7", "other kxk"))
    lines.append(f"parameters left real-valued after kxk pattern binarization: {total - pattern:,}")
    sizes = info.sizes(True, is_pattern)
    lines.append("model size: R {:.2f} MB, B {:.2f} MB, BQ {:.2f} MB".format(
        sizes["R"] / MB, sizes["B"] / MB, sizes["BQ"] / MB) + pattern_note)
    lines.append(f"multiply-accumulates per image (main path): {info.macs(True):,}")
    return "\n".join(lines)
