"""Whole nets in the engine against stock pycaffe, same weights and inputs: every blob of the
forward pass, and in TRAIN the parameter gradients of the loss and BatchNorm's updated
statistics, agree to 1e-5 of each blob's magnitude (ResNet-20 and the GoogLeNet stem are the
authors' own prototxts with their Data layers replaced by an Input layer)."""
import numpy as np
import pytest

from tests.support.engine import Case, assert_conforms, run_cases
from tests.support.nets import conformance_nets

R = np.random.default_rng(11)


def inputs(shape, classes):
    return {"data": R.standard_normal(shape).astype(np.float32),
            "label": R.integers(0, classes, shape[:1]).astype(np.float32)}


def cases(authors, directory):
    out = []
    for phase in ("TRAIN", "TEST"):
        for name, path, shape, classes in conformance_nets(authors, directory):
            out.append(Case(f"{name}_{phase}", path, phase, inputs(shape, classes),
                            top_diffs=name == "googlenet_inception_3a"))
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
