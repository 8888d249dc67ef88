"""Caffe's Datum databases (LevelDB and LMDB) as Caffe's Data layer reads them."""
import io
from pathlib import Path

from sepnets.errors import CaffeFileError, UserError
from sepnets.proto import caffe_pb2

BACKENDS = {caffe_pb2.DataParameter.LEVELDB: "leveldb", caffe_pb2.DataParameter.LMDB: "lmdb"}


def backend_name(backend):
    """DataParameter.backend enum or 'leveldb'/'lmdb' -> 'leveldb'/'lmdb'."""
    if isinstance(backend, str):
        name = backend.lower()
        if name not in BACKENDS.values():
            raise UserError(f"unknown database backend '{backend}' (leveldb or lmdb)")
        return name
    return BACKENDS[backend]


def iter_records(source, backend):
    """Yields (key, value) byte pairs in key order, as Caffe's DB cursors do."""
    backend = backend_name(backend)
    path = Path(source)
    if not path.is_dir():
        raise CaffeFileError(source, f"no {backend} database here (not a directory)")
    if backend == "lmdb":
        import lmdb
        try:
            env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=True)
        except lmdb.Error as err:
            raise CaffeFileError(source, f"cannot open as LMDB: {err}") from None
        try:
            with env.begin(buffers=False) as txn:
                yield from txn.cursor()
        finally:
            env.close()
    else:
        import plyvel
        try:
            db = plyvel.DB(str(path), create_if_missing=False)
        except plyvel.Error as err:
            raise CaffeFileError(source, f"cannot open as LevelDB: {err}") from None
        try:
            yield from db.iterator()
        finally:
            db.close()


def decode_datum(value, source="<datum>"):
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as err:  # protobuf's DecodeError, or a wrong record type
        raise CaffeFileError(source, f"record is not a caffe Datum: {err}") from None
    return datum


def first_datum(source, backend):
    for _, value in iter_records(source, backend):
        return decode_datum(value, source)
    raise CaffeFileError(source, "database is empty")


def datum_shape(datum, force_color=False, force_gray=False):
    """(channels, height, width) of a Datum, decoding an encoded image to learn its size."""
    if datum.encoded:
        from PIL import Image
        image = Image.open(io.BytesIO(datum.data))
        channels = 3 if force_color else 1 if force_gray else len(image.getbands())
        return channels, image.height, image.width
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
