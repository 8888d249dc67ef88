"""sepnets.names: every file name the toolkit writes or reads back, written once."""
from pathlib import Path

from sepnets import names


def test_snapshot_names_are_caffes(tmp_path):
    prefix = tmp_path / "lenet"
    assert names.snapshot(prefix, 300, "solverstate") == f"{prefix}_iter_300.solverstate"
    assert names.snapshot("m/x", 0, "tempfile") == "m/x_iter_0.tempfile"
    for it in (10, 2, 100):
        for kind in names.SNAPSHOT_KINDS:
            Path(names.snapshot(prefix, it, kind)).write_bytes(b"")
    # names that only look alike are not snapshots of this prefix
    (tmp_path / "lenet_iter_5.caffemodel.tmp").write_bytes(b"")
    (tmp_path / "lenet_fix_5x5_pattern_iter_7.caffemodel").write_bytes(b"")
    (tmp_path / "lenet_iter_x.caffemodel").write_bytes(b"")
    found = names.snapshots(prefix, "caffemodel")
    assert [it for it, _ in found] == [2, 10, 100]                  # by iteration, not by text
    assert [p.name for _, p in found][0] == "lenet_iter_2.caffemodel"
    assert names.snapshot_iteration("a/b_iter_42.solverstate") == 42
    assert names.snapshot_iteration("b_iter_42.tempfile") is None


def test_pattern_binarization_names():
    name = names.quantized_model("models/bvlc_googlenet_quick_iter_600000.caffemodel",
                                 "3x3_5x5", 0.06)
    assert str(name) == "models/bvlc_googlenet_quick_iter_600000_quant_3x3_5x5_0.06.caffemodel"
    assert names.quantized_model("x.caffemodel", "kxk", None).name == "x_quant_kxk_mean.caffemodel"
    assert names.offset_text(0.1 + 0.2) == "0.3"
    assert names.offset_text(float("0.060")) == "0.06"       # OFFSET=0.060 names the 0.06 model
    assert names.filters_tag(["3x3", "5x5"]) == "3x3_5x5"
    assert names.fine_tune_net("3x3") == "train_val_fix_3x3_pattern.prototxt"
    assert names.fine_tune_solver("kxk") == "solver_fix_kxk_pattern.prototxt"
    assert names.fine_tune_prefix("models/lenet/lenet", "5x5") == "models/lenet/lenet_fix_5x5_pattern"
    assert names.pattern_figure("inception_3a/3x3") == "inception_3a_3x3_patterns.png"


def test_log_tables_and_data_paths():
    assert names.log_table("out.csv", "train") == Path("out.train.csv")
    assert names.log_table("out", "test1", "run 1.log") == Path("out.run_1.log.test1.csv")
    assert names.mnist_db("train") == "data/mnist/mnist_train_lmdb"
    files = names.cifar10_files("highway-padded")
    assert files["train"] == "data/cifar10/highway-padded/train_leveldb"
    assert files["paddedmean"] == "data/cifar10/highway-padded/paddedmean.binaryproto"
    assert "paddedmean" not in names.cifar10_files("gcn")
    assert names.imagenet_db("val") == "data/imagenet/ilsvrc12_val_lmdb"
    assert all(d.startswith("data/") for d in names.DATA_TARGETS)
