"""Caffe file I/O against stock Caffe: what we write, stock Caffe loads identically, and what
stock Caffe writes, we read identically. Bad inputs give one clear line."""

import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.errors import CaffeFileError, UserError
from sepnets.nets import analysis
from tests.support import models, pycaffe
from tests.support.project import NETS, run_tool

TINY = NETS / "tiny.prototxt"

# pycaffe side (Python 3.9, stock Caffe 1.0): dump a net's parameters to .npz
def stock_params(stock, net, weights, out):
    args = [net, weights, out] if weights else [net, out]
    pycaffe.run("dump_params", *args)
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def random_model(net_path, seed=0, legacy=(), double=()):
    """A Model for `net_path` built by our library alone: layer messages and random blobs."""
    rng = np.random.default_rng(seed)
    model = models.model_for(net_path, rng.standard_normal)
    for name, blobs in model.blobs.items():
        dtype = np.float64 if name in double else np.float32
        model.blobs[name] = [b.astype(dtype) for b in blobs]
    for name, index in legacy:
        model.legacy.add((name, index))
    return model


def test_our_caffemodel_loads_in_stock_caffe_with_identical_blobs(stock, tmp_path):
    model = random_model(TINY, legacy=[("ip", 0), ("conv1", 1)])
    path = tmp_path / "ours.caffemodel"
    files.write_model(path, model)
    got = stock_params(stock, TINY, path, tmp_path / "p.npz")
    assert len(got) == sum(len(v) for v in model.blobs.values())
    for name, blobs in model.blobs.items():
        for i, blob in enumerate(blobs):
            assert np.array_equal(got[f"{name}__{i}"], blob), (name, i)


def test_double_blobs_load_in_stock_caffe(stock, tmp_path):
    model = random_model(TINY, seed=1, double={"conv3"})
    assert model.blobs["conv3"][0].dtype == np.float64
    path = tmp_path / "double.caffemodel"
    files.write_model(path, model)
    got = stock_params(stock, TINY, path, tmp_path / "p.npz")
    assert np.array_equal(got["conv3__0"], model.blobs["conv3"][0].astype(np.float32))
    again = files.read_model(path)
    assert again.blobs["conv3"][0].dtype == np.float64
    assert np.array_equal(again.blobs["conv3"][0], model.blobs["conv3"][0])


def test_stock_saved_caffemodel_reads_back_identically(stock, tmp_path):
    saved = tmp_path / "stock.caffemodel"
    pycaffe.run("save_net", TINY, saved, tmp_path / "p.npz")
    model = files.read_model(saved)
    with np.load(tmp_path / "p.npz") as z:
        expected = {k: z[k] for k in z.files}
    got = {f"{k}__{i}": b for k, v in model.blobs.items() for i, b in enumerate(v)}
    assert set(got) == set(expected)
    for key in expected:
        assert got[key].shape == expected[key].shape and np.array_equal(got[key], expected[key]), key
    assert [layer.name for layer in model.layers()] == [layer.name for layer in files.read_net(TINY).layer]
    assert model.layer("conv1").convolution_param.num_output == 8
    assert not model.legacy
    # Writing it back unchanged gives bytes stock Caffe reads to the same values.
    again = tmp_path / "again.caffemodel"
    files.write_model(again, model)
    assert files.read_model(again).blobs.keys() == model.blobs.keys()
    reread = stock_params(stock, TINY, again, tmp_path / "q.npz")
    for key in expected:
        assert np.array_equal(reread[key], expected[key])


def test_legacy_4d_blobs_read_and_keep_their_form(stock, tmp_path):
    model = random_model(TINY, seed=2, legacy=[("ip", 0)])
    path = tmp_path / "legacy.caffemodel"
    files.write_model(path, model)
    back = files.read_model(path)
    assert ("ip", 0) in back.legacy
    assert back.blobs["ip"][0].shape == (1, 1, 5, 24)  # the stored legacy form
    info = analysis.analyze(TINY)
    errors, _ = analysis.check_weights(info, back)
    assert errors == []


def test_mean_binaryproto_both_ways(stock, tmp_path):
    mean = np.random.default_rng(3).uniform(0, 255, (1, 3, 4, 5)).astype(np.float32)
    ours = tmp_path / "mean.binaryproto"
    files.write_blobproto(ours, mean, legacy=True)
    theirs = tmp_path / "theirs.binaryproto"
    out = pycaffe.run_json("blobproto_roundtrip", ours, theirs)
    assert tuple(out["shape"]) == mean.shape
    assert np.array_equal(np.array(out["values"], np.float32), mean.ravel())
    assert np.array_equal(files.read_blobproto(theirs), mean * 2)


def test_solverstate_crosses_over_with_stock_caffe(stock, tmp_path):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{NETS / "tiny_train.prototxt"}"\nbase_lr: 0.01\nmomentum: 0.9\n'
                      'lr_policy: "step"\ngamma: 0.5\nstepsize: 2\nmax_iter: 3\nsnapshot: 3\n'
                      f'snapshot_prefix: "{tmp_path}/tiny"\nsolver_mode: CPU\nrandom_seed: 5\n')
    stock.run_caffe(["train", "--solver", solver], cwd=tmp_path)
    state = files.read_solverstate(tmp_path / "tiny_iter_3.solverstate")
    model = files.read_model(tmp_path / "tiny_iter_3.caffemodel")
    assert state.iter == 3
    assert state.learned_net.endswith("tiny_iter_3.caffemodel")
    # one history blob per learnable parameter blob, in net order, shaped like it
    shapes = [b.shape for layer in model.layers() for b in model.blobs.get(layer.name, [])]
    assert [h.shape for h in state.history] == shapes
    assert any(np.abs(h).sum() > 0 for h in state.history)
    # our re-written solverstate resumes in stock Caffe
    state.learned_net = str(tmp_path / "tiny_iter_3.caffemodel")
    files.write_solverstate(tmp_path / "ours.solverstate", state)
    solver.write_text(solver.read_text().replace("max_iter: 3", "max_iter: 5"))
    proc = stock.run_caffe(["train", "--solver", solver, "--snapshot", tmp_path / "ours.solverstate"],
                           cwd=tmp_path)
    assert "Resuming from" in proc.stderr
    assert "Iteration 5" in proc.stderr or (tmp_path / "tiny_iter_5.caffemodel").exists()
    assert files.read_solverstate(tmp_path / "tiny_iter_5.solverstate").iter == 5


def test_compiled_proto_is_stock_caffes(stock):
    """Our caffe_pb2 (compiled from the pinned upstream caffe.proto) has every message, field
    number, type and default that stock Caffe's own caffe_pb2 has, and nothing else."""
    theirs = pycaffe.run_json("proto_fields")
    ours = {name: sorted([f.name, f.number, f.type,
                          3 if f.is_repeated else (2 if f.is_required else 1),
                          str(f.default_value)] for f in m.fields)
            for name, m in files.caffe_pb2.DESCRIPTOR.message_types_by_name.items()}
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name] == [[*f[:4], f[4]] for f in theirs[name]], name


# ------------------------------------------------------------------- bad input

def write(path, data):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.fixture
def good_model(tmp_path):
    path = tmp_path / "good.caffemodel"
    files.write_model(path, random_model(TINY))
    return path


@pytest.mark.parametrize("damage, expected", [
    (lambda b: b[: len(b) // 2], "corrupt or truncated"),
    (lambda b: b[:-3], "corrupt or truncated"),
    (lambda b: b"", "holds no layers"),
    (lambda b: b"\x89HDF\r\n\x1a\n" + b[:20], "HDF5"),
    (lambda b: b'name: "text prototxt"\nlayer { name: "x" }\n', "corrupt"),
])
def test_damaged_caffemodel_is_one_clear_error(good_model, tmp_path, damage, expected):
    bad = write(tmp_path / "bad.caffemodel", damage(good_model.read_bytes()))
    with pytest.raises(CaffeFileError) as err:
        files.read_model(bad)
    message = str(err.value)
    assert message.startswith(str(bad)) and expected in message and "\n" not in message


def test_missing_files(tmp_path):
    for reader in (files.read_model, files.read_net, files.read_solver,
                   files.read_blobproto, files.read_solverstate):
        with pytest.raises(CaffeFileError, match="no such file"):
            reader(tmp_path / "absent")


def test_prototxt_errors_name_line_and_column(tmp_path):
    bad = write(tmp_path / "net.prototxt", 'name: "x"\nlayer {\n  name: "a"\n  typo: 3\n}\n')
    with pytest.raises(CaffeFileError) as err:
        files.read_net(bad)
    assert str(err.value) == f'{bad}:4:3: Message type "caffe.LayerParameter" has no field named "typo".'
    unclosed = write(tmp_path / "open.prototxt", 'layer {\n  name: "a"\n')
    with pytest.raises(CaffeFileError, match=r'open.prototxt:2:9: Expected "}"'):
        files.read_net(unclosed)
    solver = write(tmp_path / "solver.prototxt", 'base_lr: 0.1\nlr_policy: "step"\nmax_iter: ten\n')
    with pytest.raises(CaffeFileError, match=r"solver.prototxt:3:11: Couldn't parse integer"):
        files.read_solver(solver)
    binary = write(tmp_path / "model.prototxt", b"\n\x05\xff\xfe\x00\x01")
    with pytest.raises(CaffeFileError, match="not a text file"):
        files.read_net(binary)


def test_command_line_error_is_one_line_without_traceback(tmp_path):
    bad = write(tmp_path / "net.prototxt",
                'layer { name: "a" type: "Convolution" bottom: "nothing" top: "b" }\n')
    proc = run_tool("tools/netinfo.py", bad)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "unknown bottom blob 'nothing'" in lines[0]
    proc = run_tool("tools/netinfo.py", TINY, "--weights", tmp_path / "missing.caffemodel")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "missing.caffemodel: no such file" in proc.stderr


def test_writes_are_atomic_and_never_replace_an_input(good_model, tmp_path):
    before = good_model.read_bytes()
    model = files.read_model(good_model)
    with pytest.raises(UserError, match="refusing to overwrite an input"):
        files.write_model(good_model, model, inputs=[good_model])
    assert good_model.read_bytes() == before
    # a write that fails half-way leaves the old file and no temporary behind
    target = tmp_path / "out.caffemodel"
    target.write_bytes(b"old")
    model.blobs["conv1"][0] = object()
    with pytest.raises(Exception):
        files.write_model(target, model)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.caffemodel", "out.caffemodel"]
