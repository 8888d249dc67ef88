"""Reading and writing Caffe's files, with numpy arrays for blobs.

Text: net prototxt (NetParameter), solver (SolverParameter). Binary: .caffemodel
(NetParameter with blobs), .binaryproto (BlobProto, e.g. mean files), .solverstate
(SolverState). Every problem with an input is a CaffeFileError naming the file and, where it
applies, the line:column or byte offset. Every write is atomic (temporary file in the same
directory, then rename) and refuses to replace one of the command's input files.
"""
import errno
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from sepnets import names
from sepnets.caffe import upgrade, wire
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError, UserError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# ---------------------------------------------------------------- reading and writing bytes

def _os_problem(err):
    return err.strerror or str(err)


def read_bytes(path):
    """The bytes of a regular file (a device or a FIFO as input would never end)."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise CaffeFileError(path, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise CaffeFileError(path, "is not a regular file (a device, FIFO or socket)")
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CaffeFileError(path, "no such file") from None
    except IsADirectoryError:
        raise CaffeFileError(path, "is a directory, not a file") from None
    except MemoryError:
        raise CaffeFileError(path, "too large to read into memory") from None
    except OSError as err:
        raise CaffeFileError(path, f"cannot read: {_os_problem(err)}") from None


def same_file(a, b):
    """Whether two paths name one file (False when either cannot be looked up: missing, too
    long, holding a NUL)."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_output(path, inputs):
    for src in inputs:
        if src is not None and same_file(path, src):
            raise UserError(f"{path}: refusing to overwrite an input file; choose another output name")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file name for the output")
    if len(path.name.encode()) > names.NAME_MAX:
        raise UserError(f"{path}: file name too long ({len(path.name.encode())} bytes, at most "
                        f"{names.NAME_MAX})")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{path}: output directory {parent} does not exist")
    return parent


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write_all(outputs, inputs=()):
    """Writes {path: bytes or list of byte strings} together: every file goes to a temporary
    file beside it first, and only when all are written are they renamed into place, so a
    failure (a full disk, a read-only directory, an interrupt) leaves none of them, and no
    temporary file. Refuses to replace any of `inputs`. OS failures are one line naming the
    path and the reason (UserError)."""
    outputs = {Path(p): data for p, data in outputs.items()}
    parents = {path: _check_output(path, inputs) for path in outputs}
    temps = {}
    current = None
    try:
        for path, data in outputs.items():
            current = path
            head, tail = names.temp_affixes(path.name)
            fd, tmp = tempfile.mkstemp(prefix=head, suffix=tail, dir=parents[path])
            temps[path] = tmp
            with os.fdopen(fd, "wb") as out:
                for chunk in (data if isinstance(data, list) else [data]):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
        for path, tmp in temps.items():
            current = path
            os.replace(tmp, path)
            temps[path] = None
    except OSError as err:
        raise UserError(f"{current}: cannot write: {_os_problem(err)}") from None
    finally:
        for tmp in temps.values():
            if tmp is not None:
                _remove_quietly(tmp)
    return list(outputs)


def atomic_write(path, data, inputs=()):
    """Writes bytes (or a list of byte strings) to `path` via a temporary file and a rename.

    Refuses when `path` is one of `inputs`: an input file is never overwritten.
    """
    return atomic_write_all({path: data}, inputs)[0]


def make_dirs(path):
    """mkdir -p, a failure (a file in the way, a read-only or full file system) one line."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{path}: exists and is not a directory") from None
    except OSError as err:
        raise UserError(f"{path}: cannot create the directory: {_os_problem(err)}") from None
    return Path(path)


def open_regular(path, flags, doing):
    """os.open of a regular file, never through a symbolic link (its target, any file, would
    be what changes): the link, or a device or FIFO, is a UserError saying so; other OS errors
    are raised as they are. `doing` says what for ("append to", "write the probe")."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UserError(f"{path}: is a symbolic link; refusing to {doing} the file it points "
                            "to (remove the link)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: is not a regular file; refusing to {doing} it")
    return fd


def open_append(path):
    """`path` opened for appending text (a log), created if missing, never through a link."""
    try:
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "append to")
    except OSError as err:
        raise UserError(f"{path}: cannot append: {_os_problem(err)}") from None
    return os.fdopen(fd, "a")


# ---------------------------------------------------------------- text formats

def parse_text(path, message, text=None):
    """Parses protobuf text into `message` (Caffe's ReadProtoFromTextFile) and returns it."""
    if text is None:
        raw = read_bytes(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CaffeFileError(path, f"not a text file (byte {err.start} is not UTF-8); "
                                       "is this a binary caffemodel?") from None
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        line, col = err.GetLine(), err.GetColumn()
        # protobuf prefixes "line:col : " and sometimes the quoted line; keep the problem only
        problem = re.sub(r"^'.*?': ", "", re.sub(r"^\d+:\d+ : ", "", str(err)))
        raise CaffeFileError(f"{path}:{line}:{col}" if line else path, problem) from None
    if not message.IsInitialized():  # Caffe's TextFormat::Parse refuses it too
        raise CaffeFileError(path, "missing required field(s): "
                                   + ", ".join(message.FindInitializationErrors()))
    check_text(path, message)
    return message


def read_net(path):
    """A net prototxt as caffe_pb2.NetParameter."""
    return upgrade.require_v2(parse_text(path, caffe_pb2.NetParameter()), path)


def read_solver(path):
    """A solver prototxt as caffe_pb2.SolverParameter."""
    return parse_text(path, caffe_pb2.SolverParameter())


def format_text(message):
    return text_format.MessageToString(message)


def write_text(path, message, inputs=(), header=None):
    """Writes a message as protobuf text (optionally after comment lines), atomically."""
    text = format_text(message)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return atomic_write(path, text.encode(), inputs)


# ---------------------------------------------------------------- binary formats

def _binary(path, data, what):
    if data.startswith(HDF5_MAGIC):
        raise CaffeFileError(path, f"is an HDF5 file; only the binary protobuf {what} format is "
                                   "supported (snapshot_format: BINARYPROTO)")


def parse_binary(path, cls, data, offset=0):
    """Binary protobuf bytes -> a `cls` message; damaged bytes, or a message that lacks one
    of caffe.proto's required fields (protobuf parses it, and then cannot write it back),
    are a CaffeFileError naming the byte offset."""
    try:
        message = cls.FromString(data)
    except DecodeError as err:
        raise CaffeFileError(path, f"corrupt or truncated {cls.DESCRIPTOR.name} near byte "
                                   f"{offset}: {err}") from None
    if not message.IsInitialized():
        raise CaffeFileError(path, f"{cls.DESCRIPTOR.name} near byte {offset} lacks required "
                                   f"field(s): {', '.join(message.FindInitializationErrors())}")
    return message


@dataclass
class Model:
    """A caffemodel: the net's layers (their parameters, blobs removed) and the blobs by layer.

    blobs maps layer name -> list of numpy arrays in Caffe's order (e.g. weight, bias).
    legacy holds (layer, index) of blobs stored in the old num/channels/height/width form,
    so writing the model back keeps the form stock Caffe compares shapes against.
    """
    net: caffe_pb2.NetParameter
    blobs: dict = field(default_factory=dict)
    legacy: set = field(default_factory=set)

    def layers(self):
        """LayerParameter (or V1LayerParameter) messages in file order."""
        return list(self.net.layer) or list(self.net.layers)

    def layer(self, name):
        for layer in self.layers():
            if layer.name == name:
                return layer
        raise KeyError(name)

    def copy(self):
        net = caffe_pb2.NetParameter()
        net.CopyFrom(self.net)
        return Model(net, {k: [b.copy() for b in v] for k, v in self.blobs.items()},
                     set(self.legacy))


def blob_shape_equals(stored, target, legacy):
    """Caffe's Blob::ShapeEquals (blob.cpp:410), which CopyTrainedLayersFrom checks: a blob
    stored in the legacy num/channels/height/width form matches the target's legacy shape."""
    stored, target = tuple(stored), tuple(target)
    return stored == wire.legacy_shape(target) if legacy else stored == target


def _text_problem(message, where=""):
    """(field as 'field.subfield', what is wrong) for the first string field of `message`
    (recursively) that is not text a path or a name can be: bytes that are not UTF-8
    (protobuf hands them back as bytes), or a NUL character (no file name holds one). None
    when every string field is fine."""
    for fd, value in message.ListFields():
        name = f"{where}{fd.name}"
        if fd.type == FieldDescriptor.TYPE_STRING:
            for v in (value if fd.is_repeated else [value]):
                if isinstance(v, bytes):
                    return name, "is not UTF-8 text"
                if "\0" in v:
                    return name, "holds a NUL character"
        elif fd.type == FieldDescriptor.TYPE_MESSAGE:
            for item in (value if fd.is_repeated else [value]):
                found = _text_problem(item, name + ".")
                if found:
                    return found
    return None


def check_text(path, message, what=None, offset=None):
    """CaffeFileError naming the field when a string field of `message` is not UTF-8 text or
    holds a NUL (what, offset: where in a binary file)."""
    found = _text_problem(message)
    if found:
        where = f"{what} (byte {offset}): " if what else ""
        raise CaffeFileError(path, f"{where}field {found[0]} {found[1]}")


def _check_blob_owner(path, model, name, offset):
    if name in model.blobs:
        raise CaffeFileError(path, f"two layers named '{name}' both carry blobs (byte {offset})")


def decode_model(data, path="<bytes>"):
    """caffemodel bytes -> Model."""
    _binary(path, data, "caffemodel")
    model = Model(caffe_pb2.NetParameter())
    rest = []
    layers = []
    try:
        for number, wtype, _, fstart, vstart, vend in wire.iter_fields(data, 0, len(data)):
            if number in (wire.NET_LAYER, wire.NET_V1_LAYERS) and wtype == wire.LENGTH:
                layers.append((number, vstart, vend))
            else:
                rest.append(data[fstart:vend])
        model.net.MergeFrom(parse_binary(path, caffe_pb2.NetParameter, b"".join(rest)))
        check_text(path, model.net, "the net's parameters", 0)
        for number, vstart, vend in layers:
            v1 = number == wire.NET_V1_LAYERS
            blob_field = wire.V1_LAYER_BLOBS if v1 else wire.LAYER_BLOBS
            params, spans = wire.split_message(data, vstart, vend, blob_field)
            cls = caffe_pb2.V1LayerParameter if v1 else caffe_pb2.LayerParameter
            layer = parse_binary(path, cls, params, vstart)
            check_text(path, layer, f"layer {len(model.net.layer) + len(model.net.layers) + 1}", vstart)
            (model.net.layers if v1 else model.net.layer).add().CopyFrom(layer)
            if spans:
                _check_blob_owner(path, model, layer.name, vstart)
                arrays = []
                for i, (bstart, bend) in enumerate(spans):
                    array, legacy = wire.decode_blob(data, bstart, bend)
                    arrays.append(array)
                    if legacy:
                        model.legacy.add((layer.name, i))
                model.blobs[layer.name] = arrays
    except wire.WireError as err:
        raise CaffeFileError(path, str(err)) from None
    if not model.layers():
        raise CaffeFileError(path, "holds no layers (empty, or not a caffemodel)")
    return model


def read_model(path):
    """A .caffemodel file -> Model (blobs as float32/float64 numpy arrays)."""
    return decode_model(read_bytes(path), path)


def encode_model(model):
    """Model -> list of byte strings of the caffemodel (write it with atomic_write)."""
    head = caffe_pb2.NetParameter()
    head.CopyFrom(model.net)
    del head.layer[:]
    del head.layers[:]
    parts = [head.SerializeToString(deterministic=True)]
    v1 = bool(len(model.net.layers))
    for layer in model.layers():
        blobs = model.blobs.get(layer.name, [])
        stripped = type(layer)()
        stripped.CopyFrom(layer)
        del stripped.blobs[:]
        payload = [stripped.SerializeToString(deterministic=True)]
        for i, blob in enumerate(blobs):
            payload += wire.length_field(wire.V1_LAYER_BLOBS if v1 else wire.LAYER_BLOBS,
                                         wire.encode_blob(blob, (layer.name, i) in model.legacy))
        parts += wire.length_field(wire.NET_V1_LAYERS if v1 else wire.NET_LAYER, payload)
    return parts


def write_model(path, model, inputs=()):
    return atomic_write(path, encode_model(model), inputs)


def read_blobproto(path):
    """A .binaryproto BlobProto (e.g. a mean file) -> numpy array in its stored shape."""
    data = read_bytes(path)
    _binary(path, data, "binaryproto")
    if not data:
        raise CaffeFileError(path, "is empty")
    try:
        array, _ = wire.decode_blob(data, 0, len(data))
    except wire.WireError as err:
        raise CaffeFileError(path, str(err)) from None
    return array


def write_blobproto(path, array, inputs=(), legacy=False):
    """numpy array -> .binaryproto (Caffe's mean files use the legacy 4-D form: legacy=True)."""
    return atomic_write(path, wire.encode_blob(np.asarray(array), legacy), inputs)


@dataclass
class SolverState:
    """A .solverstate: iteration, the caffemodel it goes with, SGD history blobs, LR step."""
    iter: int
    learned_net: str
    history: list
    current_step: int = 0


def read_solverstate(path):
    data = read_bytes(path)
    _binary(path, data, "solverstate")
    rest, history = [], []
    try:
        for number, wtype, _, fstart, vstart, vend in wire.iter_fields(data, 0, len(data)):
            if number == wire.STATE_HISTORY and wtype == wire.LENGTH:
                history.append(wire.decode_blob(data, vstart, vend)[0])
            else:
                rest.append(data[fstart:vend])
    except wire.WireError as err:
        raise CaffeFileError(path, str(err)) from None
    head = parse_binary(path, caffe_pb2.SolverState, b"".join(rest))
    if not head.HasField("iter"):
        raise CaffeFileError(path, "is not a solverstate (no iteration number)")
    return SolverState(head.iter, head.learned_net, history, head.current_step)


def write_solverstate(path, state, inputs=()):
    head = caffe_pb2.SolverState(iter=state.iter, learned_net=state.learned_net,
                                 current_step=state.current_step)
    parts = [head.SerializeToString(deterministic=True)]
    for blob in state.history:
        parts += wire.length_field(wire.STATE_HISTORY, wire.encode_blob(blob))
    return atomic_write(path, parts, inputs)
