"""Pattern binarization's pieces without Caffe: filter specs and layer selection, the
binarization rule and its errors, pattern statistics, the packed B/BQ format, the `caffe test`
output parser, offset sweeps and output names."""
import json
import math

import numpy as np
import pytest

from sepnets.caffe import engines, files
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import CaffeFileError, UserError
from sepnets.nets import analysis
from sepnets.patterns import binarize, pack, quantize, selection
from tests.support import models
from tests.support.project import NETS, run_tool

QUANT_NET = NETS / "quant_train_val.prototxt"


def select(net, *specs, **kw):
    chosen = selection.Selector(selection.parse_filters(specs), **kw).select(list(net.layer))
    return [layer.name for layer in chosen]


# ---------------------------------------------------------------- filter specs and selection

def test_filter_specs():
    specs = selection.parse_filters(["3x3", "5X5,1x7", "3x3"])
    assert [s.text for s in specs] == ["3x3", "5x5", "1x7"]
    assert specs[2].kernel == (1, 7) and specs[2].matches((1, 7)) and not specs[2].matches((7, 1))
    kxk = selection.parse_filters(["kxk"])[0]
    assert kxk.matches((3, 3)) and kxk.matches((1, 3)) and not kxk.matches((1, 1))
    assert selection.Selector(specs).tag == "3x3_5x5_1x7"
    for bad in ("3x", "abc", "0x3", "3x3x3"):
        with pytest.raises(UserError, match=f"unknown filter spec '{bad.lower()}'"):
            selection.parse_filters([bad])


def test_selection_by_kernel_first_conv_and_regexes():
    net = files.read_net(QUANT_NET)
    assert select(net, "3x3") == ["conv2"]             # conv1 reads the data: stays real
    assert select(net, "3x3", include_first=True) == ["conv1", "conv2"]
    assert select(net, "3x3", "5x5") == ["conv2", "conv3"]
    assert select(net, "kxk") == ["conv2", "conv3", "conv4"]  # conv4 is 1x3
    assert select(net, "1x3") == ["conv4"]
    assert select(net, "1x1") == ["conv5"]
    assert select(net, "kxk", layers=("conv[23]",)) == ["conv2", "conv3"]
    assert select(net, "kxk", exclude=("conv3", "4$")) == ["conv2"]
    assert select(net, "7x7") == []
    why = selection.Selector(selection.parse_filters(["7x7"])).explain_empty(list(net.layer))
    assert why == "its convolutions: 2 x 3x3, 1 x 5x5, 1 x 1x3, 1 x 1x1"
    selector = selection.Selector(selection.parse_filters(["3x3"]), exclude=("conv2",))
    why = selector.explain_empty(list(net.layer))
    assert "conv1 reads the network input and stays real-valued unless --include-first" in why
    with pytest.raises(UserError, match="--exclude '\\(': not a valid regular expression"):
        selection.Selector(selection.parse_filters(["3x3"]), exclude=("(",))


def test_first_conv_through_parameter_free_layers_splits_and_net_inputs():
    net = caffe_pb2.NetParameter()
    net.input.append("img")  # a legacy net input: no layer makes it
    net.layer.add(name="scale", type="Power", bottom=["img"], top=["img_s"])
    net.layer.add(name="split", type="Split", bottom=["img_s"], top=["a", "b"])
    for name, bottom in (("conv_a", "a"), ("conv_b", "b"), ("conv_c", "conv_a")):
        layer = net.layer.add(name=name, type="Convolution", bottom=[bottom], top=[name])
        layer.convolution_param.kernel_size.append(3)
    net.layer.add(name="ip", type="InnerProduct", bottom=["b"], top=["ip"])
    net.layer.add(name="relu", type="ReLU", bottom=["ip"], top=["ip"])
    late = net.layer.add(name="conv_d", type="Convolution", bottom=["ip"], top=["conv_d"])
    late.convolution_param.kernel_size.append(3)
    assert selection.first_convs(list(net.layer)) == {"conv_a", "conv_b"}
    assert select(net, "3x3") == ["conv_c", "conv_d"]


def test_v1_layers_of_old_caffemodels():
    net = caffe_pb2.NetParameter()
    net.layers.add(name="data", type=caffe_pb2.V1LayerParameter.DATA, top=["data"])
    for name, bottom in (("conv1", "data"), ("conv2", "conv1")):
        layer = net.layers.add(name=name, type=caffe_pb2.V1LayerParameter.CONVOLUTION,
                               bottom=[bottom], top=[name])
        layer.convolution_param.kernel_size.append(5)
    sel = selection.Selector(selection.parse_filters(["5x5"]))
    assert [layer.name for layer in sel.select(list(net.layers))] == ["conv2"]


def test_pattern_layers_give_netinfo_its_b_sizes():
    info = analysis.analyze(QUANT_NET.parent / "tiny.prototxt")
    chosen = {layer.name for layer in selection.Selector(selection.parse_filters(["3x3"])).select(
        list(files.read_net(QUANT_NET.parent / "tiny.prototxt").layer))}
    assert chosen == {"conv2"}
    sizes = info.sizes(is_pattern=lambda layer: layer.name in chosen)
    every_kxk = info.sizes()  # netinfo's default: every kxk convolution, conv1 included
    conv1_weights = 8 * 4 * 9
    assert sizes["B"] - every_kxk["B"] == 4 * conv1_weights - (math.ceil(conv1_weights / 8) + 4 * 8)
    # tools/netinfo.py --filter: the same selection flags give the same sizes
    proc = run_tool("tools/netinfo.py", NETS / "tiny.prototxt", "--filter", "3x3", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["size_bytes"] == sizes
    text = run_tool("tools/netinfo.py", NETS / "tiny.prototxt", "--filter", "3x3").stdout
    assert "(B/BQ: 1 pattern layers, --filter 3x3)" in text


# ---------------------------------------------------------------- binarization

def test_binarize_sign_rule_zero_negative_and_groups():
    w = np.array([0.3, -0.2, 0.0, -0.0, 1e-9, -1e-9], np.float32).reshape(2, 1, 1, 3)
    q = binarize.binarize(w, binarize.filter_scales(w, 0.05))
    a = np.float32(0.05)
    assert q.dtype == np.float32 and q.shape == w.shape
    assert q.ravel().tolist() == [a, -a, -a, -a, a, -a]
    rng = np.random.default_rng(1)
    grouped = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)  # group 3: 6 in-channels
    q, report = binarize.quantize_layer("g", grouped, 0.07, group=3)
    assert set(np.unique(q)) == {np.float32(-0.07), np.float32(0.07)}
    assert report.kernel == (3, 3) and report.filters == 6 and report.slices == 12
    assert report.group == 3 and report.weights == 108


def test_mean_scale_is_l2_optimal_per_filter():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((4, 3, 5, 5)) * [[[[0.01]]], [[[0.1]]], [[[1]]], [[[0]]]]).astype(np.float32)
    scales = binarize.filter_scales(w)
    np.testing.assert_allclose(scales, np.abs(w).reshape(4, -1).mean(axis=1), rtol=1e-6)
    assert scales[3] == 0
    for f in range(3):
        best = binarize.errors(w[f:f + 1], binarize.binarize(w[f:f + 1], scales[f:f + 1]))[0]
        for factor in (0.9, 1.1):
            other = binarize.binarize(w[f:f + 1], scales[f:f + 1] * factor)
            assert binarize.errors(w[f:f + 1], other)[0] > best


def test_poster_filter_pattern_and_error_measure():
    """The poster's trained GoogLeNet 3x3 filter and its binarized pattern."""
    w = np.array([[-0.0219, 0.0408, -0.0547],
                  [-0.0855, 0.0478, -0.0510],
                  [-0.0105, 0.0924, -0.0126]], np.float32).reshape(1, 1, 3, 3)
    q = binarize.binarize(w, binarize.filter_scales(w, 0.06))
    assert (np.sign(q[0, 0]) == [[-1, 1, -1]] * 3).all()
    mse, rel = binarize.errors(w, q)
    by_hand = sum((abs(v) - 0.06) ** 2 for v in w.ravel().tolist()) / 9
    assert mse == pytest.approx(by_hand, rel=1e-5) and round(mse, 5) == 0.00094
    assert rel == pytest.approx(by_hand * 9 / float((w.astype(np.float64) ** 2).sum()), rel=1e-6)


def test_pattern_statistics():
    plus, minus = np.ones((3, 3)), -np.ones((3, 3))
    cross = np.where(np.eye(3) > 0, 1.0, -1.0)
    slices = [cross, cross, cross, plus, plus, minus]
    w = np.stack(slices).reshape(3, 2, 3, 3).astype(np.float32)
    assert binarize.distinct_patterns(w) == 3
    top = binarize.top_patterns(w, 5)
    assert [count for _, count in top] == [3, 2, 1]
    assert (binarize.pattern_grid(top[0][0], (3, 3)) == cross).all()
    assert top[1][0] == 511 and top[2][0] == 0
    big = np.random.default_rng(3).standard_normal((2, 2, 9, 9)).astype(np.float32)  # 81 taps
    assert binarize.distinct_patterns(big) == 4
    _, report = binarize.quantize_layer("w", w, 0.5)
    assert report.distinct == 3 and report.possible == 6


def test_report_summary_averages_layer_mse_by_kernel():
    reports = [binarize.LayerReport("a", (3, 3), 1, 1, 9, 0, 0, 0.002, 0, 1, 1),
               binarize.LayerReport("b", (5, 5), 1, 1, 25, 0, 0, 0.010, 0, 1, 1),
               binarize.LayerReport("c", (3, 3), 1, 1, 900, 0, 0, 0.004, 0, 1, 1)]
    assert binarize.summary_by_kernel(reports) == {"3x3": (pytest.approx(0.003), 2), "5x5": (0.010, 1)}
    text = binarize.format_reports(reports)
    assert "  3x3    0.0030  (2 layers)" in text and "  5x5    0.0100  (1 layer)" in text


# ---------------------------------------------------------------- the packed format

def binarized_model(seed=0, mean=False):
    """tiny.prototxt's layers with random blobs, conv2 (3x3, group 4) binarized."""
    rng = np.random.default_rng(seed)
    model = models.model_for(NETS / "tiny.prototxt",
                              lambda shape: (0.1 * rng.standard_normal(shape)).astype(np.float32))
    model.legacy.add(("ip", 0))
    model.blobs["ip"][0] = model.blobs["ip"][0].reshape(1, 1, 5, 24)
    layers = [model.layer("conv2")]
    quantized, _ = quantize.quantize_model(model, layers, None if mean else 0.05)
    quantized.blobs["conv2"][0][0] = 0.0  # a zero filter: scale 0, signs kept through packing
    quantized.blobs["conv2"][0][0, 0, 0, 0] = -0.0
    return quantized, {"conv2"}, analysis.analyze(NETS / "tiny.prototxt")


def test_pack_b_round_trip_is_bit_exact_and_sized_as_netinfo_predicts(tmp_path):
    for mean in (False, True):
        model, names, info = binarized_model(mean=mean)
        stats = pack.write(tmp_path / "m.pack", model, names, bits=32)
        back = pack.read(tmp_path / "m.pack")
        assert back.net == model.net and back.legacy == model.legacy
        for name, blobs in model.blobs.items():
            for a, b in zip(blobs, back.blobs[name]):
                assert a.shape == b.shape and a.tobytes() == b.tobytes(), name
        predicted = analysis.storage_bytes(info.param_layers(False), lambda layer: layer.name in names)
        assert stats.data_bytes == predicted["B"]
        assert stats.blobs == {"pattern": 1, "float32": 11, "8-bit": 0}
        assert stats.file_bytes == (tmp_path / "m.pack").stat().st_size


def test_pack_bq_round_trip_within_half_a_step(tmp_path):
    model, names, info = binarized_model(seed=4)
    model.blobs["bn1"][2] = np.array([7.5], np.float32)  # a constant blob: step 0, exact
    stats = pack.write(tmp_path / "m.pack", model, names, bits=8)
    pack.unpack(tmp_path / "m.pack", tmp_path / "m.caffemodel")
    back = files.read_model(tmp_path / "m.caffemodel")
    predicted = analysis.storage_bytes(info.param_layers(False), lambda layer: layer.name in names)
    assert stats.data_bytes == predicted["BQ"]
    assert back.blobs["conv2"][0].tobytes() == model.blobs["conv2"][0].tobytes()
    assert back.blobs["bn1"][2].tolist() == [7.5]
    for name, blobs in model.blobs.items():
        for i, (a, b) in enumerate(zip(blobs, back.blobs[name])):
            if (name, i) == ("conv2", 0):
                continue
            step = (float(a.max()) - float(a.min())) / 255
            err = np.abs(a.astype(np.float64) - b).max()
            assert err <= step / 2 * (1 + 1e-4) + 1e-7, (name, i, err, step)
            assert len(np.unique(b)) <= 256


def test_pack_refuses_unbinarized_weights_and_reads_bad_files_clearly(tmp_path):
    model, names, _ = binarized_model()
    with pytest.raises(UserError, match="layer 'conv1': weights are not binarized"):
        pack.encode(model, names | {"conv1"})
    pack.write(tmp_path / "m.pack", model, names)
    data = (tmp_path / "m.pack").read_bytes()
    (tmp_path / "short.pack").write_bytes(data[:-10])
    with pytest.raises(CaffeFileError, match="short.pack: truncated packed file"):
        pack.read(tmp_path / "short.pack")
    (tmp_path / "other.pack").write_bytes(b"\x08\x01" + data)
    with pytest.raises(CaffeFileError, match="not a packed pattern file"):
        pack.read(tmp_path / "other.pack")
    (tmp_path / "long.pack").write_bytes(data + b"\0")
    with pytest.raises(CaffeFileError, match="1 bytes left after the last blob"):
        pack.read(tmp_path / "long.pack")


# ---------------------------------------------------------------- caffe test output

def test_parse_caffe_test_output_with_and_without_glog_prefixes():
    text = """I1122 03:10:14.421375  8485 data_layer.cpp:73] Restarting data prefetching from start.
I1122 03:10:14.422204  8463 caffe.cpp:304] Batch 0, accuracy = 0.5
I1122 03:10:14.422233  8463 caffe.cpp:304] Batch 0, prob = 0.25
I1122 03:10:14.422233  8463 caffe.cpp:304] Batch 0, prob = 0.75
I1122 03:10:14.422233  8463 caffe.cpp:304] Batch 0, loss = 9.47026e-06
Batch 1, accuracy = 1
Batch 1, prob = nan
Batch 1, prob = 0.25
Batch 1, loss = 2
I1122 03:10:14.422857  8463 caffe.cpp:309] Loss: 1.00001
I1122 03:10:14.422860  8463 caffe.cpp:321] accuracy = 0.75
I1122 03:10:14.422860  8463 caffe.cpp:321] prob = -nan
prob = 0.5
loss = 1.00001 (* 0.3 = 0.300002 loss)
"""
    scores = engines.parse(text)
    assert scores.loss == 1.00001 and len(scores.batches) == 2
    assert scores.batches[1][0] == ("accuracy", 1.0)
    assert scores.labels() == ["accuracy", "prob", "prob#1", "loss"]
    assert scores.value("accuracy").value == 0.75 and math.isnan(scores.value("prob").value)
    assert scores.value("loss").loss_weight == 0.3 and scores.value("prob#1").loss_weight == 0
    assert engines.parse("no scores here\n").outputs == []


def test_sweep_choice_of_metric_and_ties():
    def scores(acc, loss):
        return engines.TestScores([engines.Output("accuracy", acc),
                                     engines.Output("loss", loss, 1.0)])
    results = [(0.02, scores(0.5, 2.0)), (0.03, scores(0.7, 1.5)), (0.04, scores(0.7, 1.2)),
               (0.05, scores(float("nan"), 0.1))]
    label, maximize = quantize.choose_metric(results[0][1], None)
    assert (label, maximize) == ("accuracy", True)
    assert quantize.best_offset(results, label, maximize) == 0.04
    assert quantize.choose_metric(results[0][1], "loss") == ("loss", False)
    assert quantize.best_offset(results, "loss", False) == 0.05
    with pytest.raises(UserError, match="--metric top5: the net's test outputs are accuracy, loss"):
        quantize.choose_metric(results[0][1], "top5")


# ---------------------------------------------------------------- offsets

def test_offsets():
    assert quantize.parse_sweep("0.02:0.09:0.01") == [0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]
    assert quantize.parse_sweep("0.05,0.1") == [0.05, 0.1]
    for bad, why in (("0.09:0.02:0.01", "START <= STOP"), ("a:b", "expected START:STOP:STEP"),
                     ("0:0.02:0.01", "must be a positive number")):
        with pytest.raises(UserError, match=why):
            quantize.parse_sweep(bad)
