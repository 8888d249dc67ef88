"""The packed pattern-network file (SEP-Net-B / SEP-Net-BQ storage) and its reader.

Layout (little-endian):
  8 bytes   magic b"SEPPACK" + format version 1
  4 bytes   length H of the header
  H bytes   the caffemodel's NetParameter with every blob reduced to its shape (no data), so
            the layers' parameters come back unchanged
  then, for every blob in header order, one kind byte and its data:
    0 FLOAT    n float32                                   (4n bytes)
    1 PATTERN  one float32 scale per output filter, then n sign bits (bit set: +scale),
               np.packbits order: bit 7 of the first byte is the first weight
                                                           (4 * filters + ceil(n / 8) bytes)
    2 LINEAR8  float32 minimum, float32 step, n uint8 codes: w = minimum + code * step
                                                           (8 + n bytes)
The data bytes (without the kind bytes) are exactly what sepnets.nets.analysis.storage_bytes counts for B
(bits=32: other blobs FLOAT) and BQ (bits=8: other blobs LINEAR8).

Unpacking gives a caffemodel: PATTERN and FLOAT blobs exactly, LINEAR8 blobs within half a
step of the original.
"""
import math
import struct
from dataclasses import dataclass

import numpy as np

from sepnets.caffe import files, wire
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError, UserError

MAGIC = b"SEPPACK\x01"
FLOAT, PATTERN, LINEAR8 = 0, 1, 2
KIND_NAMES = {FLOAT: "float32", PATTERN: "pattern", LINEAR8: "8-bit"}


@dataclass
class PackStats:
    file_bytes: int
    data_bytes: int    # blob data only: comparable to analysis.storage_bytes
    blobs: dict        # kind name -> number of blobs


def pattern_scales(name, weights):
    """The per-filter scale of a binarized blob; UserError if a filter is not +-scale."""
    flat = weights.reshape(weights.shape[0], -1)
    scales = np.abs(flat[:, 0]) if flat.shape[1] else np.zeros(flat.shape[0], weights.dtype)
    if not np.array_equal(np.abs(flat), np.broadcast_to(scales[:, None], flat.shape)):
        raise UserError(f"layer '{name}': weights are not binarized (+a/-a per filter); "
                        "pack the output of quant_pattern.py")
    return scales.astype(np.float32)


def linear8(array):
    """(minimum, step, uint8 codes) of an 8-bit linear quantization over the blob's range."""
    flat = np.asarray(array, np.float32).ravel()
    if not flat.size:
        return np.float32(0), np.float32(0), np.zeros(0, np.uint8)
    lo, hi = np.float32(flat.min()), np.float32(flat.max())
    step = np.float32((np.float64(hi) - np.float64(lo)) / 255)
    if step == 0:
        return lo, step, np.zeros(flat.size, np.uint8)
    codes = np.rint((flat.astype(np.float64) - lo) / step)
    return lo, step, np.clip(codes, 0, 255).astype(np.uint8)


def _header(model):
    head = caffe_pb2.NetParameter()
    head.CopyFrom(model.net)
    for layer in list(head.layer) + list(head.layers):
        del layer.blobs[:]
        for i, blob in enumerate(model.blobs.get(layer.name, [])):
            proto = layer.blobs.add()
            if (layer.name, i) in model.legacy:
                proto.num, proto.channels, proto.height, proto.width = blob.shape
            else:
                proto.shape.SetInParent()  # present even for a 0-axis blob
                proto.shape.dim.extend(blob.shape)
    return head.SerializeToString(deterministic=True)


def encode(model, pattern_layers, bits=32):
    """Packed bytes (a list of chunks) and PackStats-without-file-size for a binarized model.

    pattern_layers: names of the layers whose weight blob (blob 0) is binarized.
    bits: 32 keeps the other blobs float32 (B), 8 quantizes them linearly (BQ).
    """
    if bits not in (8, 32):
        raise UserError(f"--pack-bits {bits}: use 32 (SEP-Net-B) or 8 (SEP-Net-BQ)")
    header = _header(model)
    chunks = [MAGIC, struct.pack("<I", len(header)), header]
    data = 0
    counts = dict.fromkeys(KIND_NAMES.values(), 0)
    for layer in model.layers():
        for i, blob in enumerate(model.blobs.get(layer.name, [])):
            if i == 0 and layer.name in pattern_layers:
                kind = PATTERN
                payload = [pattern_scales(layer.name, blob).astype("<f4").tobytes(),
                           np.packbits(~np.signbit(blob).ravel()).tobytes()]
            elif bits == 32:
                kind = FLOAT
                payload = [np.ascontiguousarray(blob, "<f4").tobytes()]
            else:
                kind = LINEAR8
                if not np.isfinite(blob).all():
                    raise UserError(f"layer '{layer.name}' blob {i} holds NaN or inf values, which "
                                    "an 8-bit linear code cannot store; pack with --pack-bits 32")
                lo, step, codes = linear8(blob)
                payload = [struct.pack("<ff", lo, step), codes.tobytes()]
            chunks.append(bytes([kind]))
            chunks += payload
            data += sum(len(p) for p in payload)
            counts[KIND_NAMES[kind]] += 1
    return chunks, data, counts


def write(path, model, pattern_layers, bits=32, inputs=()):
    chunks, data, counts = encode(model, pattern_layers, bits)
    files.atomic_write(path, chunks, inputs)
    return PackStats(sum(len(c) for c in chunks), data, counts)


class _Reader:
    def __init__(self, path, data):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise CaffeFileError(self.path, f"truncated packed file: {what} runs past the end "
                                            f"(byte {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def _blob_shape(path, layer, i, proto):
    """(shape, legacy) of a header blob, checked as Caffe checks a blob's shape."""
    if proto.HasField("shape"):
        shape, legacy = tuple(proto.shape.dim), False
    else:
        shape, legacy = (proto.num, proto.channels, proto.height, proto.width), True
    try:
        wire.check_dims(shape, 0)
    except wire.WireError as err:
        raise CaffeFileError(path, f"header: layer '{layer.name}' blob {i}: "
                                   f"{str(err).split(': ', 1)[1]}") from None
    return shape, legacy


def decode(data, path="<bytes>"):
    """Packed bytes -> files.Model (pattern and float32 blobs exact, 8-bit ones dequantized)."""
    if not data.startswith(MAGIC[:7]):
        raise CaffeFileError(path, "not a packed pattern file (no SEPPACK magic)")
    if len(data) < len(MAGIC):
        raise CaffeFileError(path, "truncated packed file: it ends inside the magic")
    if data[:8] != MAGIC:
        raise CaffeFileError(path, f"packed format version {data[7]} is not supported (expected 1)")
    reader = _Reader(path, memoryview(data))
    reader.take(8, "magic")
    (size,) = struct.unpack("<I", reader.take(4, "header size"))
    head = files.parse_binary(path, caffe_pb2.NetParameter, bytes(reader.take(size, "header")), 12)
    files.check_text(path, head, "header", 12)
    model = files.Model(head)
    for layer in model.layers():
        arrays = []
        if layer.name in model.blobs and len(layer.blobs):
            raise CaffeFileError(path, f"header: two layers named '{layer.name}' both carry blobs")
        for i, proto in enumerate(layer.blobs):
            shape, legacy = _blob_shape(path, layer, i, proto)
            n = math.prod(shape)
            kind = reader.take(1, f"layer '{layer.name}' blob {i}")[0]
            if kind == PATTERN:
                filters = shape[0] if shape else 1
                scales = np.frombuffer(reader.take(4 * filters, "scales"), "<f4")
                bits = np.unpackbits(np.frombuffer(reader.take(math.ceil(n / 8), "bits"), np.uint8),
                                     count=n).astype(bool).reshape(filters, n // filters if filters else 0)
                a = scales[:, None]
                array = np.where(bits, a, -a).astype(np.float32).reshape(shape)
            elif kind == FLOAT:
                array = np.frombuffer(reader.take(4 * n, "floats"), "<f4").reshape(shape).copy()
            elif kind == LINEAR8:
                lo, step = struct.unpack("<ff", reader.take(8, "minimum and step"))
                codes = np.frombuffer(reader.take(n, "codes"), np.uint8)
                array = (np.float32(lo) + codes.astype(np.float32) * np.float32(step)).reshape(shape)
            else:
                raise CaffeFileError(path, f"layer '{layer.name}' blob {i}: unknown blob kind {kind}")
            arrays.append(array)
            if legacy:
                model.legacy.add((layer.name, i))
        if arrays:
            model.blobs[layer.name] = arrays
        del layer.blobs[:]
    if reader.pos != len(data):
        raise CaffeFileError(path, f"{len(data) - reader.pos} bytes left after the last blob")
    return model


def read(path):
    return decode(files.read_bytes(path), path)


def unpack(path, output):
    """Packed file -> .caffemodel at `output`; returns the Model."""
    model = read(path)
    files.write_model(output, model, inputs=[path])
    return model
