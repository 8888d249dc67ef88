"""netinfo: shapes equal stock Caffe's blob shapes, the paper's parameter counts, the weight
check."""
import json

import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from sepnets.nets import analysis
from tests.support import models
from tests.support.nets import assert_shapes_match_stock, with_input_layers
from tests.support.project import NETS, run_tool


def test_shape_zoo_matches_stock_caffe(stock):
    info = assert_shapes_match_stock(stock, NETS / "shape_zoo.prototxt", "TEST")
    assert info.blob_shapes["pool_ceil"] == (2, 6, 8, 7)
    assert info.blob_shapes["pool_floor"] == (2, 6, 7, 6)


def test_layer_zoo_matches_stock_caffe(stock):
    """The fuzz suite's seed of the newer layer types (Deconvolution, Crop, PReLU, ELU, MVN,
    SPP, Im2col, Tile, Embed, RNN, LSTM, Reduction, Parameter, ArgMax, ...) is a net stock
    Caffe builds, with the same blob and parameter shapes."""
    info = assert_shapes_match_stock(stock, NETS / "layer_zoo.prototxt", "TRAIN")
    assert info.blob_shapes["crop"] == (2, 4, 8, 8) and info.blob_shapes["lstm"] == (3, 2, 3)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_resnet20_shapes_match_stock_caffe(stock, authors, tmp_path, phase):
    net = with_input_layers(authors / "resnet20_relu_msra_cifar10.prototxt", tmp_path / "r20.prototxt", 2)
    info = assert_shapes_match_stock(stock, net, phase)
    assert info.blob_shapes["score"] == (2, 10)
    # 3x3 weights: conv1 432 + 6 x 2,304 + 4,608 + 5 x 9,216 + 18,432 + 5 x 36,864, plus the
    # authors' two shortcut projections, which are 3x3 stride-2 convolutions (4,608 + 18,432)
    counts = info.counts()
    assert counts["3x3"] == 290_736 and counts["1x1"] == 0 and counts["fc"] == 640
    assert info.total() == 295_327


def test_googlenet_shapes_and_main_path_count(stock, authors, tmp_path):
    net = with_input_layers(authors / "googlenet_train_val.prototxt", tmp_path / "g.prototxt", 1)
    info = assert_shapes_match_stock(stock, net, "TEST")
    assert info.total(main_only=True) == 6_998_552
    # the auxiliary classifiers are off the main path
    assert "loss1/fc" not in info.main and "loss3/classifier" in info.main


def test_netinfo_cli_googlenet_reading_the_authors_file_directly(authors):
    proc = run_tool("tools/netinfo.py", authors / "googlenet_train_val.prototxt",
                    "--data-shape", "data=10,3,224,224", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["params"]["total_main"] == 6_998_552
    counts = doc["params"]["main"]
    assert counts["3x3"] == 3_101_184 and counts["5x5"] == 595_200 and counts["7x7"] == 9_408
    text = run_tool("tools/netinfo.py", authors / "googlenet_train_val.prototxt",
                    "--data-shape", "data=10,3,224,224").stdout
    assert "parameters (main path): 6,998,552" in text
    assert "model size: R 27.99 MB" in text


def test_size_conventions():
    """R/B/BQ arithmetic on a hand-countable net (tiny.prototxt)."""
    info = analysis.analyze(NETS / "tiny.prototxt")
    counts = info.counts()
    assert counts["3x3"] == 8 * 4 * 9 + 8 * 2 * 9      # conv1, conv2 (group 4)
    assert counts["1x1"] == 6 * 8
    assert counts["fc"] == 5 * 24 and counts["bias"] == 8 + 6 + 5
    assert counts["bn/scale"] == (8 + 8 + 1) + (8 + 8)
    total = info.total()
    sizes = info.sizes()
    assert sizes["R"] == 4 * total
    pattern = [(8 * 4 * 9, 8), (8 * 2 * 9, 8)]  # (weights, output filters) of the kxk convs
    real = total - sum(n for n, _ in pattern)
    assert sizes["B"] == 4 * real + sum(-(-n // 8) + 4 * f for n, f in pattern)
    other_blobs = 1 + 3 + 2 + 2 + 2   # conv1 bias, bn1 x3, scale1 x2, conv3 x2, ip x2
    assert sizes["BQ"] == real + 8 * other_blobs + sum(-(-n // 8) + 4 * f for n, f in pattern)


def test_weights_check_reports_mismatches(tmp_path):
    tiny = NETS / "tiny.prototxt"
    model = models.model_for(tiny, lambda shape: np.zeros(shape, np.float32))
    good = tmp_path / "good.caffemodel"
    files.write_model(good, model)
    proc = run_tool("tools/netinfo.py", tiny, "--weights", good)
    assert proc.returncode == 0 and "match the net" in proc.stdout
    model.blobs["conv3"][0] = np.zeros((6, 8, 3, 3), np.float32)
    model.blobs["ip"] = model.blobs["ip"][:1]
    del model.blobs["scale1"]
    bad = tmp_path / "bad.caffemodel"
    files.write_model(bad, model)
    proc = run_tool("tools/netinfo.py", tiny, "--weights", bad)
    assert proc.returncode == 1
    assert ("layer 'conv3' blob 0: weights have shape (6, 8, 3, 3), the net expects (6, 8, 1, 1)"
            in proc.stdout)
    assert "layer 'ip': 1 blobs in the weights, the net has 2" in proc.stdout
    assert "net layer 'scale1' has no weights" in proc.stdout


def test_data_layer_shape_comes_from_its_database(tmp_path):
    import lmdb
    db = tmp_path / "db"
    env = lmdb.open(str(db), map_size=1 << 20)
    with env.begin(write=True) as txn:
        datum = caffe_pb2.Datum(channels=3, height=40, width=40, label=1, data=bytes(3 * 40 * 40))
        txn.put(b"00000000", datum.SerializeToString())
    env.close()
    net = tmp_path / "net.prototxt"
    net.write_text(f'layer {{ name: "d" type: "Data" top: "data" top: "label" '
                   f'transform_param {{ crop_size: 32 }} '
                   f'data_param {{ source: "{db}" backend: LMDB batch_size: 16 }} }}\n')
    info = analysis.analyze(net)
    assert info.blob_shapes == {"data": (16, 3, 32, 32), "label": (16,)}
    missing = tmp_path / "missing.prototxt"
    missing.write_text(net.read_text().replace(str(db), str(tmp_path / "nodb")))
    proc = run_tool("tools/netinfo.py", missing)
    assert proc.returncode == 2 and "nodb: no lmdb database here" in proc.stderr
