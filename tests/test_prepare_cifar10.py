"""prepare_cifar10 on a small archive in the real format: the preprocessing follows the
published formulas, and stock Caffe's Data layer (as the authors configure it) returns exactly
the floats and labels stored; the mean files load in pycaffe and equal numpy's mean."""
import http.server
import io
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest

from sepnets.caffe import db, files
from sepnets.datasets import cifar10, download
from sepnets.errors import CaffeFileError
from tests.support.data import data_layer, forward
from tests.support.datagen import write_cifar_archive
from tests.support.project import run_tool

TOOL = "tools/prepare_cifar10.py"
PAD = 4


def records(source, backend):
    arrays, labels = [], []
    for _, value in db.iter_records(source, backend):
        datum = db.decode_datum(value)
        assert not datum.data and not datum.encoded  # float records: data left empty
        arrays.append(db.datum_array(datum))
        labels.append(datum.label)
    return np.stack(arrays), np.asarray(labels)


def expected_gcn(rows):
    """pylearn2 global_contrast_normalize(X, scale=55.), written out again for the test."""
    x = rows.astype(np.float64)
    x -= x.mean(axis=1)[:, None]
    norm = np.sqrt(np.square(x).sum(axis=1)) / 55.0
    norm[norm < 1e-8] = 1.0
    return (x / norm[:, None]).astype(np.float32)


def expected_zca(train, test, bias=0.1):
    """pylearn2 ZCA(filter_bias=0.1) from the SVD of the centered data (another route to
    P = (cov + bias I)^-1/2 than the tool's eigendecomposition)."""
    train, test = train.astype(np.float64), test.astype(np.float64)
    mean = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    scale = 1.0 / np.sqrt(s ** 2 / len(train) + bias)
    def whiten(x):
        c = x - mean
        inside = (c @ vt.T) * scale @ vt
        outside = (c - (c @ vt.T) @ vt) / np.sqrt(bias)
        return inside + outside
    return whiten(train), whiten(test)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The archive and every variant built once by the command-line tool."""
    root = tmp_path_factory.mktemp("cifar")
    archive = root / "cifar-10-python.tar.gz"
    truth = write_cifar_archive(archive, per_batch=4, test=6)
    runs = {"highway-padded": "leveldb", "highway": "lmdb", "nin": "leveldb"}
    for variant, backend in runs.items():
        proc = run_tool(TOOL, "--variant", variant, "--backend", backend, "--archive", archive,
                        "--out", root / variant)
        assert proc.returncode == 0, proc.stderr
    return root, archive, truth


@pytest.fixture(scope="module")
def through_caffe(built, authors, stock, tmp_path_factory):
    """Every database read by stock pycaffe in one run."""
    root, _, (train_x, _, test_x, _) = built
    hp = root / "highway-padded"
    authors_net = files.read_net(authors / "resnet20_relu_msra_cifar10.prototxt")
    train_layer, test_layer = [layer for layer in authors_net.layer if layer.type == "Data"]
    for layer, db_name, mean_name, n in ((train_layer, "train_leveldb", "paddedmean", len(train_x)),
                                         (test_layer, "test_leveldb", "mean", len(test_x))):
        layer.data_param.source = str(hp / db_name)
        layer.transform_param.mean_file = str(hp / f"{mean_name}.binaryproto")
        layer.data_param.batch_size = n
    jobs = {
        "authors_train": (train_layer, "TRAIN"),
        "authors_test": (test_layer, "TEST"),
        "padded_whole": (data_layer(hp / "train_leveldb", "leveldb", len(train_x),
                                    hp / "paddedmean.binaryproto"), "TEST"),
        "padded_center": (data_layer(hp / "train_leveldb", "leveldb", len(train_x),
                                     hp / "paddedmean.binaryproto", crop=32), "TEST"),
        "highway_train": (data_layer(root / "highway/train_lmdb", "lmdb", len(train_x),
                                     root / "highway/mean.binaryproto"), "TEST"),
        "nin_test": (data_layer(root / "nin/test_leveldb", "leveldb", len(test_x),
                                root / "nin/mean.binaryproto"), "TEST"),
    }
    outs = forward(stock, tmp_path_factory.mktemp("caffe"), list(jobs.values()))
    return dict(zip(jobs, outs))


def test_archive_in_the_python2_pickle_format_loads_as_written(built):
    _, archive, truth = built
    for got, want in zip(cifar10.load_archive(archive), truth):
        assert np.array_equal(got, want)


def test_highway_preprocessing_is_pylearn2_gcn_and_the_padding_is_zeros(built):
    root, _, (train_x, train_y, test_x, test_y) = built
    padded, labels = records(root / "highway-padded/train_leveldb", "leveldb")
    assert padded.shape == (len(train_x), 3, 32 + 2 * PAD, 32 + 2 * PAD)
    assert np.array_equal(labels, train_y)
    gcn = expected_gcn(train_x).reshape(-1, 3, 32, 32)
    np.testing.assert_allclose(padded[:, :, PAD:-PAD, PAD:-PAD], gcn, rtol=1e-5, atol=1e-5)
    border = padded.copy()
    border[:, :, PAD:-PAD, PAD:-PAD] = 0
    assert not border.any()
    constant = train_x.min(axis=1) == train_x.max(axis=1)
    assert constant.any() and not padded[constant].any()  # mean removed, divisor rule keeps 0
    # GCN with scale 55: zero mean, L2 norm 55 per image
    flat = gcn.reshape(len(gcn), -1)[~constant]
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(flat, axis=1), 55.0, rtol=1e-5)
    plain, _ = records(root / "highway/train_lmdb", "lmdb")
    assert np.array_equal(plain, padded[:, :, PAD:-PAD, PAD:-PAD])
    test, labels = records(root / "highway-padded/test_leveldb", "leveldb")
    assert test.shape == (len(test_x), 3, 32, 32) and np.array_equal(labels, test_y)
    np.testing.assert_allclose(test, expected_gcn(test_x).reshape(-1, 3, 32, 32), rtol=1e-5, atol=1e-5)


def test_nin_preprocessing_is_gcn_then_pylearn2_zca(built):
    root, _, (train_x, _, test_x, _) = built
    want_train, want_test = expected_zca(expected_gcn(train_x), expected_gcn(test_x))
    got_train, _ = records(root / "nin/train_leveldb", "leveldb")
    got_test, _ = records(root / "nin/test_leveldb", "leveldb")
    np.testing.assert_allclose(got_train.reshape(len(got_train), -1), want_train, atol=1e-5)
    np.testing.assert_allclose(got_test.reshape(len(got_test), -1), want_test, atol=1e-5)


def test_authors_data_layers_read_our_highway_padded_data(built, through_caffe):
    """The authors' resnet20 Data layers (TRAIN: paddedmean, crop 32, mirror; TEST: mean,
    crop 32) return, for every image, a 32x32 window of (stored - mean), mirrored or not."""
    root, _, (_, train_y, _, test_y) = built
    hp = root / "highway-padded"
    padded, _ = records(hp / "train_leveldb", "leveldb")
    padded_mean = files.read_blobproto(hp / "paddedmean.binaryproto")[0]
    centered = padded - padded_mean
    out = through_caffe["authors_train"]
    assert out["data"].shape == (len(train_y), 3, 32, 32)
    assert np.array_equal(out["label"], train_y)
    side = 32 + 2 * PAD
    for image, source in zip(out["data"], centered):
        windows = [source[:, y:y + 32, x:x + 32] for y in range(side - 31) for x in range(side - 31)]
        assert any(np.array_equal(image, w) or np.array_equal(image, w[:, :, ::-1]) for w in windows)
    test, _ = records(hp / "test_leveldb", "leveldb")
    mean = files.read_blobproto(hp / "mean.binaryproto")[0]
    out = through_caffe["authors_test"]
    assert np.array_equal(out["data"], test - mean) and np.array_equal(out["label"], test_y)


def test_stock_caffe_returns_exactly_the_stored_floats_leveldb_and_lmdb(built, through_caffe):
    root, _, (_, train_y, _, test_y) = built
    hp = root / "highway-padded"
    padded, _ = records(hp / "train_leveldb", "leveldb")
    padded_mean = files.read_blobproto(hp / "paddedmean.binaryproto")[0]
    mean = files.read_blobproto(hp / "mean.binaryproto")[0]
    whole = through_caffe["padded_whole"]
    assert np.array_equal(whole["data"], padded - padded_mean)
    assert np.array_equal(whole["label"], train_y)
    # TEST-phase crop takes the center: the unpadded images minus the unpadded mean
    center = through_caffe["padded_center"]["data"]
    assert np.array_equal(center, padded[:, :, PAD:-PAD, PAD:-PAD] - mean)
    for name, source, backend, labels in (("highway_train", "highway/train_lmdb", "lmdb", train_y),
                                          ("nin_test", "nin/test_leveldb", "leveldb", test_y)):
        stored, _ = records(root / source, backend)
        stored_mean = files.read_blobproto(root / source.split("/")[0] / "mean.binaryproto")[0]
        assert np.array_equal(through_caffe[name]["data"], stored - stored_mean), name
        assert np.array_equal(through_caffe[name]["label"], labels), name


def test_mean_files_load_in_pycaffe_and_equal_numpys_mean(built, through_caffe, stock, tmp_path):
    root, _, _ = built
    hp = root / "highway-padded"
    padded, _ = records(hp / "train_leveldb", "leveldb")
    np.testing.assert_allclose(through_caffe["padded_whole"]["mean"][0],
                               padded.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(through_caffe["authors_test"]["mean"][0],
                               padded[:, :, PAD:-PAD, PAD:-PAD].mean(axis=0, dtype=np.float64),
                               rtol=1e-6, atol=1e-7)
    nin, _ = records(root / "nin/train_leveldb", "leveldb")
    np.testing.assert_allclose(through_caffe["nin_test"]["mean"][0],
                               nin.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-6)
    # compute_image_mean (float32 sums of float_data) agrees with ours
    stock.run_caffe_program("compute_image_mean", ["-backend", "leveldb", hp / "train_leveldb",
                                                   tmp_path / "theirs.binaryproto"], quiet=True)
    np.testing.assert_allclose(files.read_blobproto(tmp_path / "theirs.binaryproto"),
                               files.read_blobproto(hp / "paddedmean.binaryproto"),
                               rtol=1e-5, atol=1e-5)


def test_rerun_is_a_no_op_and_force_rebuilds(built):
    root, archive, _ = built
    out = root / "highway-padded"
    before = (out / "paddedmean.binaryproto").stat().st_mtime_ns
    proc = run_tool(TOOL, "--archive", archive, "--out", out)
    assert proc.returncode == 0 and "up to date" in proc.stderr
    assert (out / "paddedmean.binaryproto").stat().st_mtime_ns == before
    rebuilt = root / "rebuilt"
    assert run_tool(TOOL, "--archive", archive, "--out", rebuilt).returncode == 0
    # the other backend beside it: the mean files (the same data) are simply written again
    proc = run_tool(TOOL, "--archive", archive, "--out", rebuilt, "--backend", "lmdb")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in rebuilt.iterdir()) == [
        "mean.binaryproto", "paddedmean.binaryproto", "test_leveldb", "test_lmdb", "train_leveldb",
        "train_lmdb"]
    (rebuilt / "test_leveldb").rename(rebuilt / "elsewhere")
    proc = run_tool(TOOL, "--archive", archive, "--out", rebuilt)
    assert proc.returncode == 2 and "train_leveldb" in proc.stderr and "--force" in proc.stderr
    proc = run_tool(TOOL, "--archive", archive, "--out", rebuilt, "--force")
    assert proc.returncode == 0, proc.stderr
    assert (rebuilt / "test_leveldb").is_dir() and (rebuilt / "elsewhere").is_dir()
    assert not [p for p in rebuilt.iterdir() if p.name.startswith(".")]


def _tar_with(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("echo pwned",))


def test_bad_archives_give_one_line_naming_the_file(tmp_path):
    text = tmp_path / "notes.tar.gz"
    text.write_text("hello")
    proc = run_tool(TOOL, "--archive", text, "--out", tmp_path / "o1")
    assert proc.returncode == 2 and "notes.tar.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    missing = tmp_path / "partial.tar.gz"
    _tar_with(missing, {"data_batch_1": b""})
    with pytest.raises(CaffeFileError, match="data_batch_1: not a CIFAR-10 batch"):
        cifar10.load_archive(missing)
    _tar_with(missing, {})
    with pytest.raises(CaffeFileError, match="has no cifar-10-batches-py/data_batch_1"):
        cifar10.load_archive(missing)
    evil = tmp_path / "evil.tar.gz"
    _tar_with(evil, {"data_batch_1": pickle.dumps({"data": _Evil()}, protocol=2)})
    with pytest.raises(CaffeFileError, match="unexpected object (posix|os).system"):
        cifar10.load_archive(evil)
    assert not (tmp_path / "o1").exists()


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_says_where_to_put_the_archive(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    proc = run_tool(TOOL, "--download-dir", tmp_path / "dl", "--url", url, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    message = proc.stderr.strip()
    assert f"put it at {tmp_path / 'dl' / 'cifar-10-python.tar.gz'}" in message
    assert cifar10.MD5 in message and "--archive" in message
    assert not (tmp_path / "o").exists()
    assert not any((tmp_path / "dl").iterdir())


@pytest.fixture
def http_server(tmp_path):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_is_md5_checked_and_kept_only_when_it_matches(tmp_path, http_server):
    served = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(served, per_batch=2, test=2)
    dl = tmp_path / "dl"
    proc = run_tool(TOOL, "--download-dir", dl, "--url", f"{http_server}/cifar-10-python.tar.gz",
                    "--out", tmp_path / "o")
    assert proc.returncode == 2
    assert f"expected {cifar10.MD5}" in proc.stderr and "nothing was kept" in proc.stderr
    assert not any(dl.iterdir())
    md5 = download.md5sum(served)
    got = download.fetch(f"{http_server}/cifar-10-python.tar.gz", dl / "a.tar.gz", md5)
    assert got.read_bytes() == served.read_bytes() and sorted(p.name for p in dl.iterdir()) == ["a.tar.gz"]
    # present: used as it is, no network (the URL now points at a closed port)
    assert download.fetch(f"http://127.0.0.1:{_closed_port()}/x", dl / "a.tar.gz", md5) == got
