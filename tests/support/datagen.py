"""Small inputs in the real formats, made by the tests: a CIFAR-10 python archive (pickles
written opcode by opcode as Python 2's cPickle wrote the official ones), MNIST idx files,
image files."""
import gzip
import io
import struct
import tarfile

import numpy as np


def _py2_str(data):
    data = data.encode() if isinstance(data, str) else bytes(data)
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data          # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(data)) + data    # BINSTRING


def _py2_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])                      # BININT1
    return b"J" + struct.pack("<i", value)               # BININT


def _py2_array(array):
    """numpy (<1.x, Python 2) pickling of a uint8 ndarray: _reconstruct + BUILD state."""
    shape = b"(" + b"".join(_py2_int(d) for d in array.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_str("u1") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str("|") + b"NNN" + _py2_int(-1) + _py2_int(-1)
             + _py2_int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85"
            + _py2_str("b") + b"\x87R" + b"(" + _py2_int(1) + shape + dtype + b"\x89"
            + _py2_str(np.ascontiguousarray(array).tobytes()) + b"tb")


def _py2_value(value):
    if isinstance(value, np.ndarray):
        return _py2_array(value)
    if isinstance(value, (str, bytes)):
        return _py2_str(value)
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2_value(v) for v in value) + b"e"
    raise TypeError(type(value))


def py2_pickle(mapping):
    """A dict of str keys -> protocol-2 pickle bytes as Python 2 wrote them (str as BINSTRING)."""
    body = b"".join(_py2_str(k) + _py2_value(v) for k, v in mapping.items())
    return b"\x80\x02}(" + body + b"u."


def cifar_images(rng, n):
    """n random images as CIFAR rows (uint8, N x 3072) with labels 0..9, a few extreme ones."""
    rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    rows[0] = 7            # a constant image: GCN's divisor rule
    rows[1, :1024] = 255   # saturated red plane
    return rows, [int(v) for v in rng.integers(0, 10, n)]


def write_cifar_archive(path, per_batch=4, test=6, seed=0):
    """cifar-10-python.tar.gz with 5 training batches of `per_batch` images and `test` test
    images; returns (train_x, train_y, test_x, test_y) as stored."""
    rng = np.random.default_rng(seed)
    batches = [cifar_images(rng, per_batch) for _ in range(5)]
    test_x, test_y = cifar_images(rng, test)
    with tarfile.open(path, "w:gz") as tar:
        def add(name, payload):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for i, (x, y) in enumerate(batches, 1):
            add(f"data_batch_{i}", py2_pickle({
                "batch_label": f"training batch {i} of 5", "labels": y, "data": x,
                "filenames": [f"img_{i}_{j}.png" for j in range(len(y))]}))
        add("test_batch", py2_pickle({"batch_label": "testing batch 1 of 1", "labels": test_y,
                                      "data": test_x, "filenames": ["t.png"] * len(test_y)}))
        add("batches.meta", py2_pickle({"label_names": ["airplane"] * 10,
                                        "num_cases_per_batch": per_batch, "num_vis": 3072}))
    return (np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches]),
            test_x, np.asarray(test_y))


def write_idx(path, array, gz=False):
    """MNIST idx file: magic 0x0801 (labels) / 0x0803 (images), big-endian dims, uint8 data."""
    array = np.asarray(array, np.uint8)
    payload = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    if gz:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def pattern_image(rng, height, width):
    """A color test image with gradients and noise (JPEG-friendly, not constant)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([(xx * 7 + yy * 3) % 256, (xx * xx + yy) % 256,
                     rng.integers(0, 256, (height, width))], -1).astype(np.uint8)
