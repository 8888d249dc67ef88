"""Caffe's Datum databases (LevelDB and LMDB) as Caffe's Data layer reads them."""
import math
import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sepnets.caffe import files, wire
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError, UserError

BACKENDS = {caffe_pb2.DataParameter.LEVELDB: "leveldb", caffe_pb2.DataParameter.LMDB: "lmdb"}


def backend_name(backend):
    """DataParameter.backend enum or 'leveldb'/'lmdb' -> 'leveldb'/'lmdb'."""
    if isinstance(backend, str):
        name = backend.lower()
        if name not in BACKENDS.values():
            raise UserError(f"unknown database backend '{backend}' (leveldb or lmdb)")
        return name
    return BACKENDS[backend]


_OPEN = {}  # (backend, real path) -> [open database, number of readers]
_OPEN_LOCK = threading.Lock()


def _open(path, backend, source):
    if backend == "lmdb":
        import lmdb
        try:
            return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
        except lmdb.Error as err:
            raise CaffeFileError(source, f"cannot open as LMDB: {err}") from None
    import plyvel
    try:
        return plyvel.DB(str(path), create_if_missing=False)
    except plyvel.Error as err:
        raise CaffeFileError(source, f"cannot open as LevelDB: {err}") from None


@contextmanager
def _shared(path, backend, source):
    """One open handle per database in this process, shared by its readers (LMDB and
    LevelDB both refuse a second open in one process; Caffe's TRAIN and TEST Data layers, or
    a reader on another thread, may read the same database at once)."""
    key = (backend, os.path.realpath(path))
    with _OPEN_LOCK:
        entry = _OPEN.get(key)
        if entry is None:
            entry = _OPEN[key] = [_open(path, backend, source), 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _OPEN_LOCK:
            entry[1] -= 1
            if entry[1] == 0:
                del _OPEN[key]
                entry[0].close()


def iter_records(source, backend):
    """Yields (key, value) byte pairs in key order, as Caffe's DB cursors do."""
    backend = backend_name(backend)
    path = Path(source)
    try:
        is_dir = path.is_dir()
    except OSError as err:  # what is_dir does not take for "no": a name too long, EACCES, ...
        raise CaffeFileError(source, f"cannot open the {backend} database: "
                                     f"{err.strerror or err}") from None
    if not is_dir:
        raise CaffeFileError(source, f"no {backend} database here (not a directory)")
    with _shared(path, backend, source) as handle:
        if backend == "lmdb":
            with handle.begin(buffers=False) as txn:
                yield from txn.cursor()
        else:
            yield from handle.iterator()


def decode_datum(value, source="<datum>"):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as err:  # protobuf's DecodeError, or a wrong record type
        raise CaffeFileError(source, f"record is not a caffe Datum: {err}") from None
    return datum


# Datum (caffe.proto): channels 1, height 2, width 3, data 4, label 5, float_data 6, encoded 7
DATUM_SHAPE, DATUM_DATA, DATUM_LABEL, DATUM_FLOATS, DATUM_ENCODED = (1, 2, 3), 4, 5, 6, 7
_FLOAT_KEY = (DATUM_FLOATS << 3) | wire.FIXED32  # one unpacked float: this byte, 4 bytes
_UNPACKED_FLOAT = np.dtype([("key", "u1"), ("value", "<f4")])


def record_image(value, force_color=False, force_gray=False, source="<datum>"):
    """A database value -> (height x width x channels array, label): the Datum's values in
    OpenCV's layout (a view of the stored channels x height x width planes; an encoded image
    as decoded). Unencoded records are read from the wire bytes with numpy (their values are
    one bytes field, or one float field per value, which the protobuf runtime converts one
    by one: 100 us for a 3x40x40 record); encoded images and anything unusual go through
    the protobuf runtime."""
    try:
        fast = _unencoded(value)
    except wire.WireError:
        fast = None
    if fast is not None:
        return fast[0].transpose(1, 2, 0), fast[1]
    datum = decode_datum(value, source)
    if datum.encoded:
        return _decoded(datum, force_color, force_gray, source), datum.label
    return datum_array(datum, source=source).transpose(1, 2, 0), datum.label


def _unencoded(buf):
    """(array, label) of an unencoded Datum's bytes, or None to leave it to protobuf."""
    end, pos = len(buf), 0
    scalars, data, floats = {}, None, []
    while pos < end:
        key, start = wire.read_varint(buf, pos, end)
        number, wtype = key >> 3, key & 7
        if number == DATUM_FLOATS and wtype == wire.FIXED32:  # a run of unpacked floats
            fields = np.frombuffer(buf, _UNPACKED_FLOAT, (end - pos) // 5, pos)
            keys = fields["key"] == _FLOAT_KEY
            run = len(keys) if keys.all() else int(np.argmin(keys))
            floats.append(fields["value"][:run].astype(np.float32))
            pos += 5 * run
            continue
        if wtype == wire.VARINT:
            scalars[number], pos = wire.read_varint(buf, start, end)
        elif wtype == wire.LENGTH and number in (DATUM_DATA, DATUM_FLOATS):
            length, start = wire.read_varint(buf, start, end)
            if start + length > end:
                return None
            if number == DATUM_DATA:
                data = np.frombuffer(buf, np.uint8, length, start)
            elif length % 4 == 0:
                floats.append(np.frombuffer(buf, "<f4", length // 4, start))
            else:
                return None
            pos = start + length
        else:
            return None
    if scalars.get(DATUM_ENCODED) or not set(scalars) <= {*DATUM_SHAPE, DATUM_LABEL, DATUM_ENCODED}:
        return None
    shape = tuple(scalars.get(n, 0) for n in DATUM_SHAPE)
    if data is not None and data.size:
        values = data
    else:
        values = floats[0] if len(floats) == 1 else np.concatenate(floats or [np.zeros(0, "<f4")])
    if values.size != math.prod(shape) or not values.size:
        return None  # protobuf's path gives the error message
    label = scalars.get(DATUM_LABEL, 0) & 0xFFFFFFFF
    return values.reshape(shape), label - (1 << 32) if label >= 1 << 31 else label


def first_value(source, backend):
    for _, value in iter_records(source, backend):
        return value
    raise CaffeFileError(source, "database is empty")


def first_datum(source, backend):
    return decode_datum(first_value(source, backend), source)


def datum_shape(datum, force_color=False, force_gray=False):
    """(channels, height, width) of a Datum, decoding an encoded image to learn its size."""
    if datum.encoded:  # Caffe's InferBlobShape decodes the image too
        return datum_array(datum, force_color, force_gray).shape
    return datum.channels, datum.height, datum.width


def data_layer_shapes(layer):
    """Top shapes of a Data layer from the first record of its database (Caffe reads it too)."""
    if layer.type != "Data":
        raise UserError(f"layer '{layer.name}': shapes of {layer.type} layers are not read "
                        "from data; replace it by an Input layer")
    p = layer.data_param
    t = layer.transform_param
    c, h, w = datum_shape(first_datum(p.source, p.backend), t.force_color, t.force_gray)
    if t.crop_size:
        h = w = t.crop_size
    tops = [(p.batch_size, c, h, w)]
    if len(layer.top) > 1:
        tops.append((p.batch_size,))
    return tops


class DatumWriter:
    """Writes Datum records to a new LevelDB or LMDB the way Caffe's converters do.

    Keys are the zero-padded record index (Caffe's format_int(i, key_digits)), optionally
    followed by "_" and a suffix (convert_imageset appends the file name), so the key order
    is the write order. The database is built under a temporary name beside `dest` and
    renamed only when closed without error: an interrupted run never leaves a half
    database under the final name.
    """

    def __init__(self, dest, backend, key_digits=8, map_size=1 << 40, batch=1000):
        self.dest = Path(dest)
        self.backend = backend_name(backend)
        self.key_digits = key_digits
        self.batch = batch
        self.count = 0
        if self.dest.exists():
            raise UserError(f"{self.dest}: already exists; remove it or choose another --out")
        files.make_dirs(self.dest.parent)
        self.tmp = self.dest.with_name(f".{self.dest.name}.partial")
        shutil.rmtree(self.tmp, ignore_errors=True)  # left by an interrupted run
        self._pending = []
        with self._failures("create"):
            if self.backend == "lmdb":
                import lmdb
                self._db = lmdb.open(str(self.tmp), map_size=map_size, subdir=True, meminit=False,
                                     map_async=True)
            else:
                import plyvel
                self._db = plyvel.DB(str(self.tmp), create_if_missing=True, error_if_exists=True)

    @contextmanager
    def _failures(self, doing):
        """A database library's or the OS's failure (a full disk, a read-only folder) as one
        line naming the database."""
        import lmdb
        import plyvel
        try:
            yield
        except (lmdb.Error, plyvel.Error, OSError) as err:
            reason = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
            raise UserError(f"{self.dest}: cannot {doing} the database: {reason}") from None

    def key(self, index, suffix=None):
        key = str(index).zfill(self.key_digits)
        return (key + "_" + suffix if suffix else key).encode()

    def put(self, datum, suffix=None, index=None):
        """Adds one record; `index` (default: the number written so far) names its key, so a
        converter that skips an input can keep the input's line number, as convert_imageset does."""
        value = datum if isinstance(datum, bytes) else datum.SerializeToString()
        self._pending.append((self.key(self.count if index is None else index, suffix), value))
        self.count += 1
        if len(self._pending) >= self.batch:
            self._flush()

    def _flush(self):
        with self._failures("write"):
            if self.backend == "lmdb":
                with self._db.begin(write=True) as txn:
                    for k, v in self._pending:
                        txn.put(k, v)
            else:
                with self._db.write_batch() as wb:
                    for k, v in self._pending:
                        wb.put(k, v)
        self._pending = []

    def close(self, ok=True):
        try:
            try:
                if ok:
                    self._flush()
            finally:
                with self._failures("write"):
                    if self.backend == "lmdb":
                        self._db.sync(True)
                    self._db.close()
            if ok:
                with self._failures("finish"):
                    os.replace(self.tmp, self.dest)
        except BaseException:
            ok = False
            raise
        finally:
            if not ok:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
        return False


def array_datum(array, label, unencoded_flag=False):
    """A (channels, height, width) array -> Datum: uint8 in `data`, anything else as float32 in
    `float_data` (data left empty, as Caffe's DataTransformer expects for float records).

    unencoded_flag=True also stores `encoded: false`, as Caffe's CVMatToDatum does, so records
    are byte-identical to convert_imageset's.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"a Datum holds a (channels, height, width) array, not shape {array.shape}")
    datum = caffe_pb2.Datum(channels=array.shape[0], height=array.shape[1], width=array.shape[2],
                            label=int(label))
    if array.dtype == np.uint8:
        datum.data = np.ascontiguousarray(array).tobytes()
    else:
        datum.float_data.extend(np.ascontiguousarray(array, np.float32).ravel().tolist())
    if unencoded_flag:
        datum.encoded = False
    return datum


def datum_array(datum, force_color=False, force_gray=False, source="<datum>"):
    """Datum -> (channels, height, width) array: uint8 for `data`, float32 for `float_data`.

    An encoded image is decoded as Caffe's DataTransformer does: natively
    (DecodeDatumNative: gray stays one channel, alpha kept) unless transform_param's
    force_color / force_gray ask for 3 or 1 channels.
    """
    if datum.encoded:
        from sepnets.caffe import images
        return images.hwc_to_chw(_decoded(datum, force_color, force_gray, source))
    shape = (datum.channels, datum.height, datum.width)
    if datum.data:
        values = np.frombuffer(datum.data, np.uint8)
    else:
        values = np.asarray(datum.float_data, np.float32)
    if values.size != int(np.prod(shape)):
        raise CaffeFileError(source, f"record holds {values.size} values, its shape {shape} "
                                     f"needs {int(np.prod(shape))}")
    return values.reshape(shape)


def _decoded(datum, force_color, force_gray, source):
    """An encoded Datum's image (H x W x C), as DataTransformer decodes it: natively, or with
    force_color / force_gray (data_transformer.cpp, io.cpp:166-189)."""
    from sepnets.caffe import images
    try:
        if force_color or force_gray:
            return images.decode_forced(datum.data, gray=force_gray)
        return images.decode(datum.data, native=True)
    except images.ImageError as err:
        raise CaffeFileError(source, f"encoded image record: {err}") from None


class MeanAccumulator:
    """The per-pixel mean of equal-sized (channels, height, width) arrays, as compute_image_mean
    makes it: uint8 sums are exact (int64) and divided in float32 as it divides, so the result
    is bit-identical to compute_image_mean's while its float32 sums are exact (below 2**24:
    up to 65,793 images) and more accurate beyond; float sums are kept in float64."""

    def __init__(self):
        self.sum = None
        self.count = 0

    def add(self, array, name="record"):
        array = np.asarray(array)
        if self.sum is None:
            self.sum = np.zeros(array.shape, np.int64 if array.dtype == np.uint8 else np.float64)
        elif array.shape != self.sum.shape:
            raise UserError(f"{name}: shape {array.shape} differs from the first record's "
                            f"{self.sum.shape}; a mean needs equal-sized records")
        self.sum += array
        self.count += 1

    def mean(self):
        if not self.count:
            raise UserError("no records: nothing to average")
        if self.sum.dtype == np.int64:
            return self.sum.astype(np.float32) / np.float32(self.count)
        return (self.sum / self.count).astype(np.float32)


def write_mean(path, mean, inputs=()):
    """A (channels, height, width) mean -> .binaryproto in the 1 x C x H x W legacy form that
    compute_image_mean writes and DataTransformer's mean_file reads."""
    return files.write_blobproto(path, np.asarray(mean, np.float32), inputs=inputs, legacy=True)


def write_records(dest, backend, records, total=None, desc=None, key_digits=8):
    """Writes (datum, suffix, index) triples (or bare Datums) with a tqdm bar; returns the count."""
    from tqdm import tqdm
    with DatumWriter(dest, backend, key_digits=key_digits) as writer:
        for record in tqdm(records, total=total, desc=desc or Path(dest).name, unit="rec",
                           dynamic_ncols=True, mininterval=0.5):
            if isinstance(record, tuple):
                writer.put(*record)
            else:
                writer.put(record)
    return writer.count
