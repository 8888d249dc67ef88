"""Which Convolution layers a filter spec selects for pattern binarization.

One rule, shared by quant_pattern.py (which layers it binarizes), tools/fix_pattern.py (which
layers it freezes) and the B/BQ sizes (sepnets.nets.analysis.storage_bytes' is_pattern):

- a layer is a candidate when it is a Convolution whose kernel matches one of the filter
  specs: `HxW` (3x3, 5x5, 1x1, 7x7, 1x7, ...) matches that kernel exactly; `kxk` matches every
  kernel with more than one tap (k > 1, non-square included);
- the first convolution(s) on the network input (a convolution fed by the data through
  parameter-free layers only) stay real-valued unless include_first: the authors' ResNet-20
  fine-tune froze every 3x3 convolution but conv1;
- `layers` (regexes, re.search on the layer name) keep only the layers that match one of them;
  `exclude` (regexes) drops the layers that match one of them.

Layers are read from LayerParameter messages (a net prototxt, or the layers a caffemodel
carries: Caffe's net.save writes every layer's parameters), so a model and its prototxt give
the same selection. Kernels come from convolution_param by Caffe's rule
(sepnets.caffe.shapes.conv_kernel: kernel_size once, once per spatial axis, or kernel_h/kernel_w),
2-D unless the kernel is given per axis for more axes.
"""
import math
import re
from dataclasses import dataclass

from sepnets import names
from sepnets.caffe import shapes
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import UserError

# V1LayerParameter (old caffemodels) stores the type as an enum
_V1_TYPES = {caffe_pb2.V1LayerParameter.CONVOLUTION: "Convolution",
             caffe_pb2.V1LayerParameter.DECONVOLUTION: "Deconvolution",
             caffe_pb2.V1LayerParameter.INNER_PRODUCT: "InnerProduct"}
# layers with learned weights: the data has been transformed once it passed one of them
WEIGHTED_TYPES = {"Convolution", "Deconvolution", "InnerProduct", "Embed", "RNN", "LSTM"}
_SPEC = re.compile(r"^(\d+)x(\d+)$")


def layer_type(layer):
    """The type name of a LayerParameter, or of a V1LayerParameter's enum."""
    if isinstance(layer.type, str):
        return layer.type
    return _V1_TYPES.get(layer.type, caffe_pb2.V1LayerParameter.LayerType.Name(layer.type))


@dataclass(frozen=True)
class FilterSpec:
    text: str            # as the user wrote it, normalized: "3x3", "1x7", "kxk"
    kernel: tuple = None  # (h, w); None for kxk

    def matches(self, kernel):
        if self.kernel is None:
            return math.prod(kernel) > 1
        return tuple(kernel) == self.kernel


def parse_filters(values):
    """--filter values (several, or comma-separated) -> list of FilterSpec, in the given order."""
    specs = []
    for value in values:
        for text in filter(None, re.split(r"[,\s]+", value.strip().lower())):
            m = _SPEC.match(text)
            if text == "kxk":
                spec = FilterSpec("kxk")
            elif m and int(m.group(1)) > 0 and int(m.group(2)) > 0:
                spec = FilterSpec(text, (int(m.group(1)), int(m.group(2))))
            else:
                raise UserError(f"unknown filter spec '{text}': use a kernel size HxW such as 3x3, "
                                "5x5, 1x1, 7x7 or 1x7, or kxk for every kernel larger than 1x1")
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise UserError("--filter needs at least one kernel size, e.g. --filter 3x3")
    return specs


def _compile(patterns, flag):
    out = []
    for p in patterns or ():
        try:
            out.append(re.compile(p))
        except re.error as err:
            raise UserError(f"{flag} {p!r}: not a valid regular expression ({err})") from None
    return out


def first_convs(layers):
    """Names of the convolutions fed by the network input through parameter-free layers only."""
    raw = set()        # blobs still carrying the input untransformed by learned weights
    produced = set()
    first = set()
    for layer in layers:
        kind = layer_type(layer)
        bottoms = list(layer.bottom)
        # a blob no layer made is a net input (NetParameter.input, or a layer cut from the file)
        raw.update(b for b in bottoms if b not in produced)
        fed_raw = not bottoms or any(b in raw for b in bottoms)
        if kind == "Convolution" and fed_raw:
            first.add(layer.name)
        for top in layer.top:
            produced.add(top)
            if fed_raw and kind not in WEIGHTED_TYPES:
                raw.add(top)
            else:
                raw.discard(top)
    return first


@dataclass
class Selector:
    """A filter selection: filter specs plus the refinements (see the module doc)."""
    filters: list
    include_first: bool = False
    layers: tuple = ()
    exclude: tuple = ()

    def __post_init__(self):
        self._layers = _compile(self.layers, "--layers")
        self._exclude = _compile(self.exclude, "--exclude")

    @property
    def tag(self):
        """The selection in file names (sepnets.names): 3x3_5x5, kxk."""
        return names.filters_tag([s.text for s in self.filters])

    def argv(self):
        """The flags that make this selection in quant_pattern.py and tools/fix_pattern.py."""
        args = ["--filter", *(s.text for s in self.filters)]
        args += ["--include-first"] if self.include_first else []
        for flag, patterns in (("--layers", self.layers), ("--exclude", self.exclude)):
            for pattern in patterns:
                args += [flag, pattern]
        return args

    def describe(self):
        text = f"--filter {' '.join(s.text for s in self.filters)}"
        if self.include_first:
            text += " --include-first"
        text += "".join(f" --layers {p!r}" for p in self.layers)
        text += "".join(f" --exclude {p!r}" for p in self.exclude)
        return text

    def select(self, layers, kernels=None):
        """The selected layers, in net order.

        layers: LayerParameter (or V1LayerParameter) messages in net order. kernels: optional
        {name: kernel tuple} overriding the kernel read from the parameters (e.g. from the
        weight blob's shape in a caffemodel).
        """
        first = set() if self.include_first else first_convs(layers)
        return [layer for layer in self._matching(layers, kernels) if layer.name not in first]

    def held_first(self, layers, kernels=None):
        """Names of the first convolutions that match but stay real (no include_first)."""
        if self.include_first:
            return []
        first = first_convs(layers)
        return [layer.name for layer in self._matching(layers, kernels) if layer.name in first]

    def _matching(self, layers, kernels):
        """Convolutions matching the filter specs and the regexes, first-conv rule aside."""
        sizes = _conv_kernels(layers, kernels)
        chosen = []
        for layer in layers:
            if layer.name not in sizes:
                continue
            if not any(spec.matches(sizes[layer.name]) for spec in self.filters):
                continue
            if self._layers and not any(r.search(layer.name) for r in self._layers):
                continue
            if any(r.search(layer.name) for r in self._exclude):
                continue
            chosen.append(layer)
        return chosen

    def explain_empty(self, layers, kernels=None):
        """Why nothing was selected: the convolution kernels present, and the first-conv rule."""
        sizes = _conv_kernels(layers, kernels)
        if not sizes:
            return "it has no Convolution layers"
        counts = {}
        for kernel in sizes.values():
            key = "x".join(map(str, kernel))
            counts[key] = counts.get(key, 0) + 1
        text = "its convolutions: " + ", ".join(f"{n} x {k}" for k, n in counts.items())
        held = self.held_first(layers, kernels)
        if held:
            text += (f"; {', '.join(held)} reads the network input and stays real-valued "
                     "unless --include-first")
        return text


def _conv_kernels(layers, kernels=None):
    """{name: kernel} of the Convolution layers."""
    return {layer.name: (kernels or {}).get(layer.name) or tuple(shapes.conv_kernel(layer))
            for layer in layers if layer_type(layer) == "Convolution"}
