"""Protobuf wire format for the bulky parts of Caffe's binary files.

A caffemodel is a NetParameter whose layers carry BlobProto blobs; their `data` is a packed
float field, i.e. contiguous little-endian float32 on the wire. Reading it through the
protobuf runtime converts element by element; here the blobs are cut out of the byte string
and read with numpy.frombuffer, while everything else (names, types, layer parameters) is
still parsed by the protobuf runtime from the remaining bytes. Field numbers are upstream
caffe.proto's.
"""
import math

import numpy as np

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

# BlobProto
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_DIFF, BLOB_SHAPE, BLOB_DOUBLE_DATA, BLOB_DOUBLE_DIFF = 5, 6, 7, 8, 9
SHAPE_DIM = 1
# NetParameter.layer (LayerParameter.blobs) and the deprecated NetParameter.layers
# (V1LayerParameter.blobs)
NET_LAYER, LAYER_BLOBS = 100, 7
NET_V1_LAYERS, V1_LAYER_BLOBS = 2, 6
# SolverState.history
STATE_HISTORY = 3


class WireError(ValueError):
    """Malformed protobuf bytes; `offset` is the byte position where it was noticed."""

    def __init__(self, offset, problem):
        self.offset = offset
        super().__init__(f"corrupt or truncated protobuf at byte {offset}: {problem}")


def read_varint(buf, pos, end):
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(pos, "varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError(pos, "varint longer than 10 bytes")


def iter_fields(buf, start, end):
    """Yields (field_number, wire_type, value, field_start, value_start, field_end).

    value is the integer for VARINT, else None; the raw value lies in buf[value_start:field_end].
    """
    pos = start
    while pos < end:
        field_start = pos
        key, pos = read_varint(buf, pos, end)
        number, wtype = key >> 3, key & 7
        if number == 0:
            raise WireError(field_start, "field number 0")
        value = None
        if wtype == VARINT:
            value, nxt = read_varint(buf, pos, end)
        elif wtype == LENGTH:
            length, pos = read_varint(buf, pos, end)
            nxt = pos + length
        elif wtype == FIXED32:
            nxt = pos + 4
        elif wtype == FIXED64:
            nxt = pos + 8
        else:
            raise WireError(field_start, f"unsupported wire type {wtype} (field {number})")
        if nxt > end:
            raise WireError(field_start, f"field {number} runs past the end of its message")
        yield number, wtype, value, field_start, pos, nxt
        pos = nxt


def _varints(buf, start, end):
    out = []
    pos = start
    while pos < end:
        v, pos = read_varint(buf, pos, end)
        out.append(v)
    return out


def _signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _one_copy(chunks, dtype):
    """The chunks as one writable native-endian array, copying the bytes once."""
    if len(chunks) == 1:
        return chunks[0].astype(dtype)
    return np.concatenate(chunks).astype(dtype, copy=False)


def decode_blob(buf, start, end):
    """BlobProto bytes -> (array, legacy). legacy: the shape came from num/channels/height/width.

    float data gives float32, double_data gives float64; diffs are skipped (Caffe writes
    caffemodels without them).
    """
    dims = None
    legacy = [None, None, None, None]
    chunks = {BLOB_DATA: [], BLOB_DOUBLE_DATA: []}
    for number, wtype, value, _, vstart, vend in iter_fields(buf, start, end):
        if number == BLOB_SHAPE and wtype == LENGTH:
            dims = []
            for n2, w2, v2, _, s2, e2 in iter_fields(buf, vstart, vend):
                if n2 != SHAPE_DIM:
                    continue
                if w2 == LENGTH:
                    dims.extend(_signed64(v) for v in _varints(buf, s2, e2))
                elif w2 == VARINT:
                    dims.append(_signed64(v2))
        elif BLOB_NUM <= number <= BLOB_WIDTH and wtype == VARINT:
            legacy[number - 1] = _signed64(value)
        elif number == BLOB_DATA:
            if wtype == LENGTH:
                if (vend - vstart) % 4:
                    raise WireError(vstart, "packed float data length is not a multiple of 4")
                chunks[BLOB_DATA].append(np.frombuffer(buf, "<f4", (vend - vstart) // 4, vstart))
            elif wtype == FIXED32:  # unpacked encoding: legal, if unusual
                chunks[BLOB_DATA].append(np.frombuffer(buf, "<f4", 1, vstart))
        elif number == BLOB_DOUBLE_DATA:
            if wtype == LENGTH:
                if (vend - vstart) % 8:
                    raise WireError(vstart, "packed double data length is not a multiple of 8")
                chunks[BLOB_DOUBLE_DATA].append(np.frombuffer(buf, "<f8", (vend - vstart) // 8, vstart))
            elif wtype == FIXED64:
                chunks[BLOB_DOUBLE_DATA].append(np.frombuffer(buf, "<f8", 1, vstart))
    if chunks[BLOB_DATA]:
        flat = _one_copy(chunks[BLOB_DATA], np.float32)
    elif chunks[BLOB_DOUBLE_DATA]:
        flat = _one_copy(chunks[BLOB_DOUBLE_DATA], np.float64)
    else:
        flat = np.zeros(0, np.float32)
    # Blob::FromProto (blob.cpp:466): any of num/channels/height/width makes the blob legacy
    # 4-D, the missing ones 0 as in caffe.proto; otherwise the shape's dims (none: 0 axes)
    is_legacy = any(d is not None for d in legacy)
    if is_legacy:
        dims = [0 if d is None else d for d in legacy]
    elif dims is None:
        dims = []
    check_dims(dims, start)
    count = math.prod(dims)
    if count != flat.size:
        raise WireError(start, f"blob shape {tuple(dims)} holds {count} values but "
                               f"{flat.size} are stored")
    return flat.reshape(dims), is_legacy


MAX_AXES = 32              # Caffe's kMaxBlobAxes (blob.hpp:14)
INT_MAX = 2 ** 31 - 1


def check_dims(dims, offset):
    """Caffe's Blob::Reshape checks (blob.cpp:22): at most 32 axes, no negative dim, and no
    more than INT_MAX values. Stricter in one corner: Caffe stops checking after a 0
    dimension, here the other dimensions too must multiply to at most INT_MAX (numpy cannot
    hold an empty array of (0, 2^31-1, 2^31-1, 2^31-1))."""
    if len(dims) > MAX_AXES:
        raise WireError(offset, f"blob has {len(dims)} axes; Caffe allows at most {MAX_AXES}")
    nonzero = 1
    for d in dims:
        if d < 0:
            raise WireError(offset, f"blob shape {tuple(dims)} has a negative dimension")
        if d > INT_MAX:
            raise WireError(offset, f"blob shape {tuple(dims)}: a dimension exceeds INT_MAX")
        nonzero *= d or 1
    if nonzero > INT_MAX:
        count = math.prod(dims)
        raise WireError(offset, f"blob shape {tuple(dims)} holds {count:,} values, more than "
                                f"Caffe's limit of INT_MAX ({INT_MAX:,})" if count else
                        f"blob shape {tuple(dims)}: its nonzero dimensions multiply to more than "
                        "INT_MAX")


def _varint_bytes(v):
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def length_field(number, payload):
    """One length-delimited field: key, length, payload (bytes or a list of bytes)."""
    size = sum(len(p) for p in payload) if isinstance(payload, list) else len(payload)
    head = _varint_bytes((number << 3) | LENGTH) + _varint_bytes(size)
    return [head] + (payload if isinstance(payload, list) else [payload])


def legacy_shape(shape):
    """Caffe's Blob::LegacyShape view (blob.hpp:139): the last four axes, missing ones as 1;
    None for a shape of more than four axes."""
    return (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None


def encode_blob(array, legacy=False):
    """array -> list of byte strings forming one BlobProto (shape or legacy 4-D, packed data).

    The data part is a memoryview of the array's bytes (write it, or bytes() it, at once)."""
    arr = np.asarray(array)
    parts = []
    if legacy:
        dims = legacy_shape(arr.shape)
        if dims is None:
            raise ValueError(f"a legacy blob has at most 4 axes, not {arr.ndim}")
        for number, d in zip((BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH), dims):
            parts.append(_varint_bytes(number << 3) + _varint_bytes(int(d)))
    else:
        dims = b"".join(_varint_bytes(int(d)) for d in arr.shape)
        parts += length_field(BLOB_SHAPE, length_field(SHAPE_DIM, dims) if arr.ndim else [])
    dtype = "<f8" if arr.dtype == np.float64 else "<f4"
    data = np.ascontiguousarray(arr, dtype).reshape(-1)
    # a byte view of the array, not a copy: the caller writes it out before changing the array
    parts += length_field(BLOB_DOUBLE_DATA if dtype == "<f8" else BLOB_DATA,
                          memoryview(data).cast("B"))
    return parts


def split_message(buf, start, end, blob_field):
    """Splits a message into (bytes of every field but `blob_field`, [(start, end) of each blob])."""
    rest = []
    blobs = []
    for number, wtype, _, fstart, vstart, vend in iter_fields(buf, start, end):
        if number == blob_field and wtype == LENGTH:
            blobs.append((vstart, vend))
        else:
            rest.append(bytes(buf[fstart:vend]))
    return b"".join(rest), blobs

