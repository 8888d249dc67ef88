"""Generators of hostile inputs for the fuzz suite (tests/test_fuzz.py, `make fuzz`) and the
harness that runs the user commands in-process.

Every generator is a hypothesis strategy that starts from a real file of the project (a
prototxt, a solver, a caffemodel made for a net, a packed file, a training log written as
stock Caffe prints it) and damages it the ways files get damaged or written by hand: a field
set to a value out of its range (0, negative, 2^31, NaN, ...), a blob or layer removed or
duplicated, a name that is not UTF-8, bytes flipped, cut off or inserted. The property the
suite checks: a command gives a result, or the project's one-line error (exit 2) - never
another exception.
"""
import math
import struct

import numpy as np
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import strategies as st

from sepnets.caffe import files, wire
from sepnets.caffe.proto import CAFFE_LAYER_TYPES, caffe_pb2
from tests.support import synthlog
from tests.support.models import model_for
from tests.support.project import NETS, REPO, run_command  # noqa: F401 (the suite's harness)

# values people and broken tools write into fields
HOSTILE_INTS = (0, 1, 2, 3, -1, -2, 7, 64, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
                10 ** 9, -2 ** 31, 2 ** 63 - 1, -2 ** 63)
HOSTILE_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 10.0, 1e-45, 1e-38, 1e38, 3.5e38, 1e300, -1e300,
                  math.inf, -math.inf, math.nan)
HOSTILE_STRINGS = ("", "data", "conv1", "label", "x/y", "../../etc", "a b", "\u00e9", "Convolution",
                   "SGD", "Adam", "step", "poly", "x" * 300)

# the nets the engine runs come twice: most inputs should get past its set-up
NET_SEEDS = (NETS / "tiny.prototxt", NETS / "shape_zoo.prototxt", NETS / "engine" / "lenet.prototxt",
             NETS / "engine" / "lenet.prototxt", NETS / "engine" / "sep_module.prototxt",
             NETS / "engine" / "sep_module.prototxt", REPO / "prototxt" / "lenet" / "deploy.prototxt",
             NETS / "layer_zoo.prototxt", NETS / "layer_zoo.prototxt")
SOLVER_SEED = REPO / "prototxt" / "lenet" / "solver.prototxt"
MODEL_NET = NETS / "tiny.prototxt"       # the caffemodels' net: every parameter-blob kind


# ---------------------------------------------------------------- running a command

def check_outcome(outcome, allowed=(0, 1, 2)):
    """The property: a result (exit 0, or 1 where the command reports a finding), or the
    project's one-line error (exit 2, one `prog: error: ...` line)."""
    assert outcome.code in allowed, (outcome.code, outcome.err[-2000:])
    if outcome.code == 2:
        # lines as a terminal shows them: "\n" only (a name may hold U+2028, which splitlines
        # would count as a line break)
        errors = [line for line in outcome.err.split("\n") if ": error: " in line]
        assert errors, outcome.err[-2000:]
        assert outcome.err.rstrip("\n").endswith(errors[-1]), outcome.err[-2000:]


# ---------------------------------------------------------------- protobuf messages

def _hostile_scalar(draw, field):
    t = field.type
    if t == FD.TYPE_BOOL:
        return draw(st.booleans())
    if t == FD.TYPE_ENUM:
        return draw(st.sampled_from([v.number for v in field.enum_type.values]))
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return draw(st.sampled_from(HOSTILE_FLOATS))
    if t == FD.TYPE_STRING:
        if field.name == "type":
            return draw(st.sampled_from(sorted(CAFFE_LAYER_TYPES) + list(HOSTILE_STRINGS)))
        return draw(st.sampled_from(HOSTILE_STRINGS))
    if t == FD.TYPE_BYTES:
        return draw(st.binary(max_size=16))
    return draw(st.sampled_from(HOSTILE_INTS))


def _set(message, field, value, index=None):
    """Sets a scalar (or one element of a repeated scalar); values out of the field's range
    are skipped (protobuf refuses them: no file can hold them)."""
    try:
        if field.is_repeated:
            values = getattr(message, field.name)
            if index is None or index >= len(values):
                values.append(value)
            else:
                values[index] = value
        else:
            setattr(message, field.name, value)
    except (ValueError, TypeError):
        pass


def mutate_message(draw, message, depth=0):
    """One random change somewhere in `message` (in place): a field set to a hostile value,
    a repeated element removed, duplicated or added, a field cleared."""
    fields = [f for f in message.DESCRIPTOR.fields]
    present = [f for f, _ in message.ListFields()]
    field = draw(st.sampled_from(present)) if present and draw(st.booleans()) else \
        draw(st.sampled_from(fields))
    if field.type == FD.TYPE_MESSAGE:
        if field.is_repeated:
            items = getattr(message, field.name)
            action = draw(st.sampled_from(("into", "into", "remove", "duplicate", "add")))
            if action == "remove" and len(items):
                del items[draw(st.integers(0, len(items) - 1))]
            elif action == "duplicate" and len(items):
                items.add().CopyFrom(items[draw(st.integers(0, len(items) - 1))])
            elif action == "into" and len(items) and depth < 4:
                mutate_message(draw, items[draw(st.integers(0, len(items) - 1))], depth + 1)
            else:
                item = items.add()
                if depth < 4:
                    mutate_message(draw, item, depth + 1)
        elif depth < 4 and draw(st.integers(0, 4)):
            mutate_message(draw, getattr(message, field.name), depth + 1)
        else:
            message.ClearField(field.name)
        return
    if field.is_repeated:
        values = getattr(message, field.name)
        if len(values) and draw(st.booleans()):
            del values[draw(st.integers(0, len(values) - 1))]
            return
        _set(message, field, _hostile_scalar(draw, field),
             draw(st.integers(0, len(values))) if len(values) else None)
    elif field in present and not draw(st.integers(0, 5)):
        message.ClearField(field.name)
    else:
        _set(message, field, _hostile_scalar(draw, field))


def mutate_text(draw, text):
    """Text-level damage: a line dropped or repeated, a character changed, the end cut off."""
    lines = text.splitlines()
    action = draw(st.sampled_from(("drop", "repeat", "char", "cut", "garbage")))
    if action in ("drop", "repeat") and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines[i:i + 1] = [] if action == "drop" else [lines[i], lines[i]]
        return "\n".join(lines) + "\n"
    if action == "cut" and text:
        return text[:draw(st.integers(0, len(text) - 1))]
    i = draw(st.integers(0, max(len(text) - 1, 0)))
    junk = draw(st.sampled_from(("{", "}", ":", '"', "\\", "#", "\x00", "\xff", "1e999", "-",
                                 "layer {", "\u2028")))
    return text[:i] + junk + text[i + (action == "char"):]


def _net_from(path):
    return text_format.Parse(path.read_text(), caffe_pb2.NetParameter())


def mutate_layer(draw, layer, blob_names):
    """One change to a layer: inside its own parameter message (the likeliest), its bottoms
    and tops (removed, added, renamed, repeated), its type, or any field."""
    action = draw(st.sampled_from(("param", "param", "param", "wiring", "type", "any")))
    own = [f for f, _ in layer.ListFields() if f.name.endswith("_param")]
    if action == "param" and own:
        mutate_message(draw, getattr(layer, draw(st.sampled_from(own)).name), 1)
    elif action == "wiring":
        which = draw(st.sampled_from(("bottom", "top")))
        blobs = getattr(layer, which)
        change = draw(st.sampled_from(("remove", "add", "rename", "repeat")))
        if change == "remove" and len(blobs):
            del blobs[draw(st.integers(0, len(blobs) - 1))]
        elif change == "repeat" and len(blobs):
            blobs.append(blobs[draw(st.integers(0, len(blobs) - 1))])
        elif change == "rename" and len(blobs):
            blobs[draw(st.integers(0, len(blobs) - 1))] = draw(st.sampled_from(blob_names + ["nowhere"]))
        else:
            blobs.append(draw(st.sampled_from(blob_names + ["nowhere"])))
    elif action == "type":
        layer.type = draw(st.sampled_from(sorted(CAFFE_LAYER_TYPES) + ["NoSuchLayer", ""]))
    else:
        mutate_message(draw, layer)


@st.composite
def net_texts(draw, seeds=NET_SEEDS):
    """A mutated net prototxt (text) of one of `seeds`: one to three changes to layers (their
    parameters, their wiring, their types) or to the net, sometimes text damage."""
    net = _net_from(draw(st.sampled_from(seeds)))
    blob_names = sorted({b for layer in net.layer for b in list(layer.bottom) + list(layer.top)})
    for _ in range(draw(st.integers(1, 3))):
        if len(net.layer) and draw(st.integers(0, 5)):
            mutate_layer(draw, net.layer[draw(st.integers(0, len(net.layer) - 1))], blob_names)
        else:
            mutate_message(draw, net)
    text = text_format.MessageToString(net)
    if not draw(st.integers(0, 5)):
        text = mutate_text(draw, text)
    return text


@st.composite
def solver_texts(draw, net_path, prefix):
    """A mutated solver for `net_path`: numeric fields, the policy, the type, test settings;
    snapshots always go to `prefix` (a mutated snapshot_prefix could point anywhere)."""
    param = text_format.Parse(SOLVER_SEED.read_text(), caffe_pb2.SolverParameter())
    param.net = str(net_path)
    param.test_iter[:] = [1]
    param.test_interval = 2
    param.max_iter = 2
    for _ in range(draw(st.integers(1, 4))):
        mutate_message(draw, param)
    # bounded so that a run stays short: a solver asking for 10^9 iterations is valid
    param.max_iter = min(param.max_iter, 3)
    param.test_iter[:] = [min(max(n, -1), 2) for n in param.test_iter[:2]]
    param.iter_size = min(param.iter_size, 2)
    param.snapshot_prefix = str(prefix)
    text = text_format.MessageToString(param)
    if not draw(st.integers(0, 6)):
        text = mutate_text(draw, text)
    return text


# ---------------------------------------------------------------- data layers

DATA_NET = """name: "data_zoo"
layer { name: "data" type: "Data" top: "data" top: "label"
  transform_param { scale: 0.00390625 crop_size: 6 mirror: true mean_file: "D/mean.binaryproto" }
  data_param { source: "D/db" backend: LMDB batch_size: 2 prefetch: 2 } }
layer { name: "images" type: "ImageData" top: "images" top: "image_labels"
  transform_param { crop_size: 6 mean_value: 104 mean_value: 117 mean_value: 123 }
  image_data_param { source: "D/images.txt" root_folder: "D/images/" batch_size: 2
    new_height: 8 new_width: 8 shuffle: true rand_skip: 1 } }
layer { name: "h5" type: "HDF5Data" top: "h5data" top: "h5label"
  hdf5_data_param { source: "D/h5.txt" batch_size: 2 shuffle: true } }
layer { name: "both" type: "Concat" bottom: "data" bottom: "images" top: "both" }
layer { name: "ip" type: "InnerProduct" bottom: "both" top: "ip"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "ip_h5" type: "InnerProduct" bottom: "h5data" top: "ip_h5"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "ip" bottom: "ip_h5" top: "sum" }
layer { name: "silence" type: "Silence" bottom: "image_labels" bottom: "h5label" }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "sum" bottom: "label" top: "loss" }
"""


def data_seed(d):
    """The sources of the engine's data layers, written into `d` - an LMDB of raw and
    PNG-encoded records with its mean file, PNG images of two heights and their list, an HDF5
    file and its list - and a net reading them all (Data, ImageData, HDF5Data, DATA_NET);
    returns the net's path, a seed for net_texts."""
    import cv2
    import h5py

    from sepnets.caffe.db import DatumWriter
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    with DatumWriter(d / "db", "lmdb") as out:
        for i, image in enumerate(images):
            datum = caffe_pb2.Datum(channels=3, height=8, width=8, label=i % 3)
            if i % 2:
                datum.data = cv2.imencode(".png", image.transpose(1, 2, 0))[1].tobytes()
                datum.encoded = True
            else:
                datum.data = image.tobytes()
            out.put(datum)
    files.write_blobproto(d / "mean.binaryproto", rng.uniform(0, 255, (1, 3, 8, 8)).astype(np.float32),
                          legacy=True)
    (d / "images").mkdir()
    for i, image in enumerate(images[:4]):
        cv2.imwrite(str(d / "images" / f"{i}.png"), image.transpose(1, 2, 0)[:7 + i % 2])
    (d / "images.txt").write_text("".join(f"{i}.png {i % 3}\n" for i in range(4)))
    with h5py.File(d / "a.h5", "w") as f:
        f["h5data"] = rng.standard_normal((4, 2, 3)).astype(np.float32)
        f["h5label"] = np.arange(4, dtype=np.float32)
    (d / "h5.txt").write_text(f"{d / 'a.h5'}\n")
    net = d / "data.prototxt"
    net.write_text(DATA_NET.replace("D/", f"{d}/"))
    return net


# ---------------------------------------------------------------- caffemodels

def blob_bytes(dims=None, legacy=None, data=b"", double=False):
    """A BlobProto on the wire with any dims (negative, huge) and any data bytes."""
    parts = []
    if legacy is not None:
        for number, d in zip((wire.BLOB_NUM, wire.BLOB_CHANNELS, wire.BLOB_HEIGHT, wire.BLOB_WIDTH),
                             legacy):
            if d is not None:
                parts.append(wire._varint_bytes(number << 3) + wire._varint_bytes(d))
    if dims is not None:
        packed = b"".join(wire._varint_bytes(d) for d in dims)
        parts += wire.length_field(wire.BLOB_SHAPE, wire.length_field(wire.SHAPE_DIM, packed)
                                   if dims else [])
    parts += wire.length_field(wire.BLOB_DOUBLE_DATA if double else wire.BLOB_DATA, data)
    return b"".join(bytes(p) for p in parts)


def layer_bytes(layer, blobs):
    """A LayerParameter on the wire: its fields, then raw blob messages."""
    stripped = caffe_pb2.LayerParameter()
    stripped.CopyFrom(layer)
    del stripped.blobs[:]
    payload = [stripped.SerializePartialToString()]  # a mutation may leave a required field out
    for blob in blobs:
        payload += wire.length_field(wire.LAYER_BLOBS, blob)
    return b"".join(bytes(p) for p in wire.length_field(wire.NET_LAYER, payload))


def valid_model(seed=0):
    """A caffemodel for MODEL_NET with random weights (files.Model)."""
    rng = np.random.default_rng(seed)
    return model_for(MODEL_NET, lambda shape: rng.standard_normal(shape).astype(np.float32))


def model_bytes(model):
    return b"".join(bytes(p) for p in files.encode_model(model))


def binarized(model, offset=0.05):
    """`model` with its 'conv1' and 'conv2' weights (those it has) binarized to +-offset, as
    quant_pattern.py writes them; returns the names of the layers binarized."""
    from sepnets.patterns.binarize import binarize
    layers = [n for n in ("conv1", "conv2") if n in model.blobs]
    for name in layers:
        weights = model.blobs[name][0]
        model.blobs[name][0] = binarize(weights, np.full(weights.shape[0], offset, np.float32))
    return layers


@st.composite
def caffemodel_bytes(draw):
    """A caffemodel made for MODEL_NET (sometimes with its convolutions binarized, as a
    patterned model), then damaged: a blob with hostile dims, NaN/inf values, double data, a
    name or type that is not UTF-8, a layer removed or repeated, a layer parameter out of
    range, or bytes flipped, cut off or inserted."""
    model = valid_model(draw(st.integers(0, 3)))
    if draw(st.booleans()):
        binarized(model)
    action = draw(st.sampled_from(("blob", "values", "name", "layers", "param", "bytes", "bytes",
                                   "legacy", "valid")))
    names = [layer.name for layer in model.layers() if layer.name in model.blobs]
    head = caffe_pb2.NetParameter(name=model.net.name).SerializeToString()
    chunks = []
    target = draw(st.sampled_from(names))
    for layer in model.layers():
        arrays = [wire.encode_blob(b) for b in model.blobs.get(layer.name, [])]
        blobs = [b"".join(bytes(p) for p in a) for a in arrays]
        if layer.name == target:
            i = draw(st.integers(0, max(len(blobs) - 1, 0)))
            original = model.blobs[layer.name][i] if blobs else np.zeros(0, np.float32)
            if action == "blob":
                dims = draw(st.lists(st.sampled_from(HOSTILE_INTS + (0, 1, 2, 3, 4)), max_size=5))
                count = math.prod(dims) if dims and all(0 <= d < 1 << 20 for d in dims) else \
                    original.size
                count = count if 0 <= count < 1 << 16 else original.size
                blobs[i:i + 1] = [blob_bytes(dims, data=np.zeros(count, "<f4").tobytes())]
            elif action == "legacy":
                legacy = draw(st.lists(st.sampled_from((None, 0, 1, 2, 3, 8, -1, 2 ** 32)),
                                       min_size=4, max_size=4))
                blobs[i:i + 1] = [blob_bytes(legacy=legacy, data=original.astype("<f4").tobytes())]
            elif action == "values":
                values = original.astype("<f4").copy().ravel()
                if values.size:
                    values[draw(st.integers(0, values.size - 1))] = draw(
                        st.sampled_from((np.nan, np.inf, -np.inf, 3e38, 1e-45)))
                double = draw(st.booleans())
                blobs[i:i + 1] = [blob_bytes(list(original.shape), data=values.astype(
                    "<f8" if double else "<f4").tobytes(), double=double)]
            elif action == "param":
                original, layer = layer, caffe_pb2.LayerParameter()
                layer.CopyFrom(original)
                mutate_message(draw, layer)
            elif action == "layers":
                if draw(st.booleans()):
                    continue
                chunks.append(layer_bytes(layer, blobs))
        chunk = layer_bytes(layer, blobs)
        if layer.name == target and action == "name":
            raw = layer.name.encode()
            chunk = chunk.replace(raw, draw(st.sampled_from((b"\xff" * len(raw), b"\xc3" + raw[1:]))), 1)
        chunks.append(chunk)
    data = head + b"".join(chunks)
    if action == "bytes":
        data = mutate_bytes(draw, data)
    return data


def mutate_bytes(draw, data):
    """Bytes flipped, cut off, inserted or removed."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(("flip", "cut", "insert", "delete")))
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[i] ^= draw(st.sampled_from((0x01, 0x80, 0xFF, 0x7F)))
        elif action == "cut":
            del data[i:]
        elif action == "insert":
            data[i:i] = draw(st.sampled_from((b"\xff", b"\x00", b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                                              b"\x0a\xff\xff\xff\xff\x0f", b"\x3a\x02\x08\x7f")))
        elif data:
            del data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


# ---------------------------------------------------------------- packed files and logs

@st.composite
def packed_bytes(draw):
    """A packed pattern file (quant_pattern.py --pack of a binarized MODEL_NET model), damaged
    in its bytes or in its header (blob dims out of range, a kind byte changed)."""
    from sepnets.patterns import pack
    model = valid_model(draw(st.integers(0, 2)))
    pattern = binarized(model)
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(model.blobs)))
        i = draw(st.integers(0, len(model.blobs[name]) - 1))
        header = pack._header(model)
        head = caffe_pb2.NetParameter.FromString(header)
        target = next(layer for layer in head.layer if layer.name == name)
        dims = draw(st.lists(st.sampled_from(HOSTILE_INTS), min_size=1, max_size=4))
        del target.blobs[i].shape.dim[:]
        target.blobs[i].shape.dim.extend(max(min(d, 2 ** 63 - 1), -2 ** 63) for d in dims)
        chunks, _, _ = pack.encode(model, set(pattern), draw(st.sampled_from((8, 32))))
        new_header = head.SerializeToString()
        data = pack.MAGIC + struct.pack("<I", len(new_header)) + new_header + b"".join(chunks[3:])
    else:
        chunks, _, _ = pack.encode(model, set(pattern), draw(st.sampled_from((8, 32))))
        data = mutate_bytes(draw, b"".join(chunks))
    return data


@st.composite
def log_texts(draw):
    """A short training log as stock Caffe prints it, then damaged line by line: lines
    dropped, repeated or swapped, numbers replaced (nan, 1e999, huge), garbage bytes, the end
    cut off mid-line."""
    writer = synthlog.training_log(synthlog.LogWriter(), draw(st.sampled_from((40, 100))), 10, 20,
                                   [("loss", 1.0)], [[("accuracy", 0), ("loss", 1.0)]],
                                   seed=draw(st.integers(0, 3)), snapshot=draw(st.sampled_from((0, 20))))
    lines = writer.text().splitlines()
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(("drop", "repeat", "swap", "number", "garbage", "cut")))
        if action == "drop":
            del lines[i]
        elif action == "repeat":
            lines.insert(i, lines[i])
        elif action == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif action == "number":
            lines[i] = _replace_number(draw, lines[i])
        elif action == "garbage":
            lines[i] = lines[i][:len(lines[i]) // 2] + draw(st.sampled_from(
                ("\x00\x00", "\ufffd", "]", " = ", "Iteration ", "#", "Testing net (#")))
        else:
            lines = lines[:i + 1]
            lines[-1] = lines[-1][:len(lines[-1]) // 2]
        if not lines:
            lines = [""]
    return "\n".join(lines)


def _replace_number(draw, line):
    import re
    numbers = list(re.finditer(r"\d+(\.\d+)?(e-?\d+)?", line))
    if not numbers:
        return line
    m = draw(st.sampled_from(numbers))
    value = draw(st.sampled_from(("nan", "-nan", "inf", "1e999", "99999999999999999999", "-1",
                                  "0", "", "1.5.5")))
    return line[:m.start()] + value + line[m.end():]


@st.composite
def binaryproto_bytes(draw):
    """A mean file (legacy 1 x C x H x W BlobProto, as compute_image_mean writes it) or a
    shaped blob, with hostile dims or damaged bytes."""
    if draw(st.booleans()):
        dims = draw(st.lists(st.sampled_from(HOSTILE_INTS + (0, 1, 2, 3, 4)), max_size=5))
        count = math.prod(dims) if dims and all(0 <= d < 64 for d in dims) else draw(st.integers(0, 8))
        return blob_bytes(dims if draw(st.booleans()) else None,
                          None if draw(st.booleans()) else (dims + [None] * 4)[:4],
                          np.zeros(count, "<f4").tobytes(), draw(st.booleans()))
    mean = np.arange(48, dtype=np.float32).reshape(1, 3, 4, 4)
    return mutate_bytes(draw, b"".join(bytes(p) for p in wire.encode_blob(mean, legacy=True)))


@st.composite
def solverstate_bytes(draw, history):
    """A .solverstate with `history` blobs, damaged: iteration, learned_net, history blobs
    removed, added or reshaped, or bytes flipped or cut off."""
    state = files.SolverState(draw(st.sampled_from((0, 10, 20, -1, 2 ** 31 - 1))), "",
                              [h.copy() for h in history], draw(st.sampled_from((0, 1, -1))))
    action = draw(st.sampled_from(("history", "bytes", "valid")))
    if action == "history" and state.history:
        i = draw(st.integers(0, len(state.history) - 1))
        change = draw(st.sampled_from(("remove", "add", "reshape")))
        if change == "remove":
            del state.history[i]
        elif change == "add":
            state.history.append(state.history[i])
        else:
            state.history[i] = state.history[i].reshape(-1)[:max(state.history[i].size - 1, 0)]
    head = caffe_pb2.SolverState(iter=state.iter, learned_net=state.learned_net,
                                 current_step=state.current_step)
    parts = [head.SerializeToString()]
    for blob in state.history:
        parts += wire.length_field(wire.STATE_HISTORY, wire.encode_blob(blob))
    data = b"".join(bytes(p) for p in parts)
    if action == "bytes":
        data = mutate_bytes(draw, data)
    return data
