"""quant_pattern.py with stock Caffe: a small net trained by `caffe train` on a generated LMDB
is binarized, loaded by pycaffe, evaluated over an offset sweep by `caffe test`, packed and
unpacked, and fine-tuned with the fix-pattern files: the patterns stay bit-identical."""
import hashlib
import shutil

import numpy as np
import pytest

from sepnets.caffe import engines, files
from sepnets.caffe.db import DatumWriter
from sepnets.caffe.proto import caffe_pb2
from sepnets.patterns import selection
from tests.support import pycaffe
from tests.support.project import NETS, REPO, run_tool

QUANT = REPO / "quant_pattern.py"
FIX = REPO / "tools" / "fix_pattern.py"
UNPACK = REPO / "tools" / "unpack_pattern.py"
SIDE = 12

# pycaffe side: the net's parameters after loading the weights, to .npz
def write_lmdb(dest, count, rng):
    """Noise images whose label is the brighter quadrant: learnable in a few iterations."""
    with DatumWriter(dest, "lmdb") as db:
        for i in range(count):
            label = i % 4
            image = rng.integers(0, 175, (3, SIDE, SIDE), dtype=np.uint8)
            r, c = divmod(label, 2)
            image[:, r * 6:(r + 1) * 6, c * 6:(c + 1) * 6] += 80
            db.put(caffe_pb2.Datum(channels=3, height=SIDE, width=SIDE, data=image.tobytes(),
                                   label=label))


@pytest.fixture(scope="module")
def trained(stock, tmp_path_factory):
    """A directory with the LMDBs, train_val.prototxt, solver.prototxt and tiny_iter_30.caffemodel
    from 30 iterations of stock `caffe train`."""
    work = tmp_path_factory.mktemp("quant")
    rng = np.random.default_rng(0)
    write_lmdb(work / "train_lmdb", 128, rng)
    write_lmdb(work / "test_lmdb", 64, rng)
    shutil.copy(NETS / "quant_train_val.prototxt", work / "train_val.prototxt")
    shutil.copy(NETS / "quant_solver.prototxt", work / "solver.prototxt")
    stock.run_caffe(["train", "--solver", "solver.prototxt"], cwd=work)
    assert (work / "tiny_iter_30.caffemodel").is_file()
    return work


@pytest.fixture
def work(trained, tmp_path):
    """A fresh copy of the trained workspace (the tests write outputs beside the model)."""
    dest = tmp_path / "w"
    shutil.copytree(trained, dest)
    return dest


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stock_params(stock, net, weights, out):
    pycaffe.run("dump_params", net, weights, out, cwd=net.parent)  # the LMDBs are relative
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def test_the_authors_invocations(work):
    """The three command lines of the authors' instructions, on x.caffemodel."""
    shutil.copy(work / "tiny_iter_30.caffemodel", work / "x.caffemodel")
    before = digest(work / "x.caffemodel")
    runs = {("--offset", "0.05", "--filter", "5x5"): ("x_quant_5x5_0.05.caffemodel", ["conv3"]),
            ("--offset", "0.06", "--filter", "3x3", "5x5"): ("x_quant_3x3_5x5_0.06.caffemodel",
                                                             ["conv2", "conv3"]),
            ("--offset", "0.09", "--filter", "1x1"): ("x_quant_1x1_0.09.caffemodel", ["conv5"])}
    original = files.read_model(work / "x.caffemodel")
    for args, (name, layers) in runs.items():
        proc = run_tool(QUANT, *args, "--model", "x.caffemodel", cwd=work)
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {name}" in proc.stdout
        assert "averaged quantization error by filter size" in proc.stdout
        held = "left real-valued as the first convolution on the input: conv1"
        assert (held in proc.stdout) == ("3x3" in args)  # conv1 is the 3x3 on the data
        model = files.read_model(work / name)
        a = np.float32(args[1])
        for layer, blobs in model.blobs.items():
            for i, blob in enumerate(blobs):
                if layer in layers and i == 0:
                    w = original.blobs[layer][0]
                    assert np.array_equal(blob, np.where(w > 0, a, -a)), layer
                else:
                    assert blob.tobytes() == original.blobs[layer][i].tobytes(), (layer, i)
    assert digest(work / "x.caffemodel") == before


def test_quantized_model_loads_in_pycaffe_with_only_the_allowed_values(stock, work):
    proc = run_tool(QUANT, "--offset", "0.06", "--filter", "kxk", "--model", "tiny_iter_30.caffemodel",
                    cwd=work)
    assert proc.returncode == 0, proc.stderr
    proc = run_tool(QUANT, "--scale", "mean", "--filter", "3x3", "--include-first",
                    "--model", "tiny_iter_30.caffemodel", cwd=work)
    assert proc.returncode == 0, proc.stderr
    original = stock_params(stock, work / "train_val.prototxt", work / "tiny_iter_30.caffemodel",
                            work / "orig.npz")
    const = stock_params(stock, work / "train_val.prototxt",
                         work / "tiny_iter_30_quant_kxk_0.06.caffemodel", work / "const.npz")
    a = np.float32(0.06)
    for key, value in const.items():
        if key in ("conv2__0", "conv3__0", "conv4__0"):    # 3x3 (group 2), 5x5, 1x3
            assert set(np.unique(value)) == {a, -a}, key
            assert np.array_equal(np.sign(value), np.where(original[key] > 0, 1, -1))
        else:
            assert np.array_equal(value, original[key]), key
    mean = stock_params(stock, work / "train_val.prototxt",
                        work / "tiny_iter_30_quant_3x3_mean.caffemodel", work / "mean.npz")
    for key in ("conv1__0", "conv2__0"):
        w = original[key].reshape(len(original[key]), -1)
        got = mean[key].reshape(len(w), -1)
        scales = np.abs(w).astype(np.float64).mean(axis=1).astype(np.float32)
        assert np.array_equal(np.abs(got), np.broadcast_to(scales[:, None], got.shape)), key
    assert np.array_equal(mean["conv3__0"], original["conv3__0"])


def test_selection_from_the_caffemodel_equals_selection_from_the_prototxt(trained):
    model = files.read_model(trained / "tiny_iter_30.caffemodel")
    net = files.read_net(trained / "train_val.prototxt")
    for specs in (["3x3"], ["kxk"], ["1x1"], ["3x3", "5x5"]):
        for first in (False, True):
            sel = selection.Selector(selection.parse_filters(specs), first)
            from_model = [layer.name for layer in sel.select(model.layers())]
            assert from_model == [layer.name for layer in sel.select(list(net.layer))]


def test_train_quantize_finetune_keeps_the_patterns_bit_identical(stock, work):
    flags = ["--filter", "3x3", "5x5"]
    proc = run_tool(QUANT, "--offset", "0.06", *flags, "--model", "tiny_iter_30.caffemodel", cwd=work)
    assert proc.returncode == 0, proc.stderr
    proc = run_tool(FIX, "--net", "train_val.prototxt", "--solver", "solver.prototxt", *flags, cwd=work)
    assert proc.returncode == 0, proc.stderr
    solver = files.read_solver(work / "solver_fix_3x3_5x5_pattern.prototxt")
    assert solver.net == "train_val_fix_3x3_5x5_pattern.prototxt"
    assert solver.snapshot_prefix == "tiny_fix_3x3_5x5_pattern" and solver.base_lr == pytest.approx(0.025)
    stock.run_caffe(["train", "--solver", "solver_fix_3x3_5x5_pattern.prototxt",
                     "--weights", "tiny_iter_30_quant_3x3_5x5_0.06.caffemodel"], cwd=work)
    quantized = files.read_model(work / "tiny_iter_30_quant_3x3_5x5_0.06.caffemodel")
    tuned = files.read_model(work / "tiny_fix_3x3_5x5_pattern_iter_30.caffemodel")
    for name, blobs in quantized.blobs.items():
        for i, blob in enumerate(blobs):
            same = blob.tobytes() == tuned.blobs[name][i].tobytes()
            if name in ("conv2", "conv3") and i == 0:
                assert same, f"pattern {name} changed in fine-tuning"
            else:
                assert not same, f"{name} blob {i} did not train"


def test_sweep_evaluates_every_offset_with_caffe_test_and_keeps_the_best(stock, work):
    before = set(p.name for p in work.iterdir())
    proc = run_tool(QUANT, "--sweep", "0.05:0.2:0.05", "--net", "train_val.prototxt",
                    "--iterations", "4", "--filter", "3x3", "5x5", "--model", "tiny_iter_30.caffemodel",
                    "--sweep-csv", "sweep.csv", cwd=work)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["offset", "accuracy", "loss"]
    table = {row.split()[0]: row.split()[1:] for row in lines[1:5]}
    assert list(table) == ["0.05", "0.1", "0.15", "0.2"]
    best = next(o for o, cells in table.items() if cells[-1:] == ["best"])
    accuracies = {o: float(cells[0]) for o, cells in table.items()}
    assert accuracies[best] == max(accuracies.values())
    assert f"best offset by accuracy: {best}" in proc.stdout
    kept = f"tiny_iter_30_quant_3x3_5x5_{best}.caffemodel"
    assert set(p.name for p in work.iterdir()) == before | {kept, "sweep.csv"}
    # the CSV holds the same table
    csv = [row.split(",") for row in (work / "sweep.csv").read_text().splitlines()]
    assert csv[0] == ["offset", "accuracy", "loss", "best"]
    assert {r[0]: r[1:3] for r in csv[1:]} == {o: cells[:2] for o, cells in table.items()}
    assert [r[0] for r in csv[1:] if r[3] == "1"] == [best]
    # the table's numbers are stock Caffe's for the kept model
    log = stock.run_caffe(["test", "--model", "train_val.prototxt", "--weights", kept,
                           "--iterations", "4"], cwd=work).stderr
    finals = [line.split("] ", 1)[1] for line in log.splitlines()
              if "caffe.cpp" in line and "] accuracy = " in line and "Batch" not in line]
    assert finals == [f"accuracy = {table[best][0]}"]


def test_caffe_test_parser_on_stock_output(stock, trained):
    proc = stock.run_caffe(["test", "--model", "train_val.prototxt", "--weights",
                            "tiny_iter_30.caffemodel", "--iterations", "3"], cwd=trained)
    scores = engines.parse(proc.stderr)
    assert scores.labels() == ["accuracy", "loss"] and len(scores.batches) == 3
    assert scores.value("loss").loss_weight == 1 and scores.value("accuracy").loss_weight == 0
    for k, out in enumerate(scores.outputs):  # Caffe's final value: the mean over batches
        assert out.value == pytest.approx(np.mean([b[k][1] for b in scores.batches]), rel=1e-5)
    assert scores.loss == pytest.approx(scores.value("loss").value, rel=1e-5)
    direct = engines.run(trained / "train_val.prototxt", trained / "tiny_iter_30.caffemodel", 3,
                           cwd=trained)
    assert direct.outputs == scores.outputs


def test_pack_unpack_gives_the_same_caffe_scores_for_b(stock, work):
    proc = run_tool(QUANT, "--offset", "0.06", "--filter", "3x3", "5x5", "--model", "tiny_iter_30.caffemodel",
                    "--pack", "b.pack", "--stats", "stats", cwd=work)
    assert proc.returncode == 0, proc.stderr
    sizes = [line for line in proc.stdout.splitlines() if line.startswith("model size")][0]
    predicted_b = int(sizes.split(" B ")[1].split(" bytes")[0].replace(",", ""))
    assert f"blob data {predicted_b:,} bytes (netinfo predicts {predicted_b:,})" in proc.stdout
    assert sorted(p.name for p in (work / "stats").iterdir()) == ["conv2_patterns.png", "conv3_patterns.png"]
    assert (work / "stats" / "conv2_patterns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    proc = run_tool(UNPACK, "b.pack", "b.caffemodel", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert (work / "b.caffemodel").read_bytes() == \
        (work / "tiny_iter_30_quant_3x3_5x5_0.06.caffemodel").read_bytes()
    proc = run_tool(QUANT, "--offset", "0.06", "--filter", "3x3", "5x5", "--model", "tiny_iter_30.caffemodel",
                    "--output", "q8.caffemodel", "--pack", "bq.pack", "--pack-bits", "8", cwd=work)
    assert proc.returncode == 0, proc.stderr
    run_tool(UNPACK, "bq.pack", "bq.caffemodel", cwd=work, check=True)
    scores = {name: engines.run("train_val.prototxt", name, 4, cwd=work)
              for name in ("q8.caffemodel", "bq.caffemodel")}
    assert scores["bq.caffemodel"].value("loss").value == pytest.approx(
        scores["q8.caffemodel"].value("loss").value, rel=0.05)


@pytest.mark.parametrize("args, message", [
    (["--offset", "0.05", "--filter", "3y3"], "unknown filter spec '3y3'"),
    (["--offset", "0.05", "--filter", "7x7"], "tiny_iter_30.caffemodel: no layer selected by --filter 7x7 "
                                              "(its convolutions: 2 x 3x3, 1 x 5x5, 1 x 1x3, 1 x 1x1)"),
    (["--offset", "0", "--filter", "3x3"], "--offset 0: the offset must be a positive number"),
    (["--offset", "-0.05", "--filter", "3x3"], "--offset -0.05: the offset must be a positive number"),
    (["--offset", "0.05", "--filter", "3x3", "--model", "missing.caffemodel"],
     "missing.caffemodel: no such file"),
    (["--offset", "0.05", "--filter", "3x3", "--net", str(NETS / "tiny.prototxt")],
     "tiny_iter_30.caffemodel does not match"),
    (["--sweep", "0.05:0.1:0.05", "--filter", "3x3"], "--sweep needs --net"),
    (["--sweep", "0.05:0.1:0.05", "--filter", "3x3", "--net", "broken.prototxt"],
     "no_such_lmdb: no lmdb database here"),
    (["--sweep", "0.05:0.1:0.05", "--filter", "3x3", "--net", "train_val.prototxt", "--gpu", "0"],
     "caffe test -model train_val.prototxt -weights "),
])
def test_errors_are_one_line_and_leave_no_output(work, args, message):
    net = files.read_net(work / "train_val.prototxt")
    net.layer[1].data_param.source = "no_such_lmdb"  # TEST data missing: `caffe test` fails
    files.write_text(work / "broken.prototxt", net)
    before = {p.name: digest(p) for p in work.iterdir() if p.is_file()}
    if "--model" not in args:
        args = args + ["--model", "tiny_iter_30.caffemodel"]
    proc = run_tool(QUANT, *args, cwd=work)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quant_pattern.py: error: "), proc.stderr
    assert message in lines[0]
    assert {p.name: digest(p) for p in work.iterdir() if p.is_file()} == before
