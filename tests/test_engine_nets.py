"""Whole nets in the engine against stock pycaffe, same weights and inputs: every blob of the
forward pass, and in TRAIN the parameter gradients of the loss and BatchNorm's updated
statistics, agree to 1e-5 of each blob's magnitude (ResNet-20 and the GoogLeNet stem are the
authors' own prototxts with their Data layers replaced by an Input layer)."""
import numpy as np
import pytest

from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from tests.support.engine import Case, assert_conforms, run_cases
from tests.support.project import NETS

R = np.random.default_rng(11)
ENGINE_NETS = NETS / "engine"


def with_input(src, dst, shape, cut_after=None, force_backward=False):
    """`src` with its Data layers replaced by one Input layer (data, label), optionally cut
    after layer `cut_after`."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter(name=net.name, force_backward=force_backward)
    data = out.layer.add(name="data", type="Input", top=["data", "label"])
    data.input_param.shape.add(dim=shape)
    data.input_param.shape.add(dim=shape[:1])
    for layer in net.layer:
        if layer.type == "Data":
            continue
        out.layer.add().CopyFrom(layer)
        if layer.name == cut_after:
            break
    files.write_text(dst, out)
    return str(dst)


def inputs(shape, classes):
    return {"data": R.standard_normal(shape).astype(np.float32),
            "label": R.integers(0, classes, shape[:1]).astype(np.float32)}


def cases(authors, directory):
    resnet = with_input(authors / "resnet20_relu_msra_cifar10.prototxt",
                        directory / "resnet20.prototxt", [2, 3, 32, 32])
    stem = with_input(authors / "googlenet_train_val.prototxt", directory / "inception.prototxt",
                      [1, 3, 64, 64], cut_after="inception_3a/output", force_backward=True)
    lenet, sep = str(ENGINE_NETS / "lenet.prototxt"), str(ENGINE_NETS / "sep_module.prototxt")
    out = []
    for phase in ("TRAIN", "TEST"):
        out += [
            Case(f"lenet_{phase}", lenet, phase, inputs((4, 1, 28, 28), 10), top_diffs=False),
            Case(f"resnet20_{phase}", resnet, phase, inputs((2, 3, 32, 32), 10), top_diffs=False),
            Case(f"sep_module_{phase}", sep, phase, inputs((2, 16, 8, 8), 10), top_diffs=False),
            Case(f"googlenet_inception_3a_{phase}", stem, phase, inputs((1, 3, 64, 64), 1000)),
        ]
    return out


@pytest.fixture(scope="module")
def net_results(stock, authors, tmp_path_factory):
    directory = tmp_path_factory.mktemp("nets")
    all_cases = cases(authors, directory)
    return all_cases, run_cases(all_cases, directory, stock)


@pytest.mark.parametrize("name", ["lenet", "resnet20", "sep_module", "googlenet_inception_3a"])
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_net_matches_stock_caffe(net_results, name, phase):
    all_cases, pairs = net_results
    index = [c.name for c in all_cases].index(f"{name}_{phase}")
    assert_conforms([pairs[index]], [all_cases[index]])


def test_frozen_layer_gets_no_gradient_in_either_engine(net_results):
    """lr_mult 0 (the SEP module's pattern conv): Caffe computes no diff for it; nor do we."""
    all_cases, pairs = net_results
    ours, theirs = pairs[[c.name for c in all_cases].index("sep_module_TRAIN")]
    assert not ours["pdiff|block_3x3|0"].any() and not theirs["pdiff|block_3x3|0"].any()
    assert ours["pdiff|block_1x1|0"].any()
