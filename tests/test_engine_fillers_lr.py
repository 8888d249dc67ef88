"""Caffe's fillers and learning rate policies in the engine against stock Caffe.

Fillers: stock pycaffe and the engine fill the same net; constant and bilinear fills are
identical, the random ones (whose numbers come from different generators) have the same
distribution: mean, spread, range, sparsity, unit row sums.
Learning rates: `caffe train` prints the rate of every iteration for each policy; the
engine's rates print identically (Caffe's float arithmetic)."""
import re

import numpy as np
import pytest
from google.protobuf import text_format

from sepnets.caffe import glog
from sepnets.caffe.proto import caffe_pb2
from sepnets.engine import lr_policy
from tests.support.engine import Case, run_cases
from tests.support.project import NETS

FILLERS = {
    "constant": "type: 'constant' value: 0.25",
    "gaussian": "type: 'gaussian' mean: 0.5 std: 2",
    "gaussian_sparse": "type: 'gaussian' std: 1 sparse: 30",
    "uniform": "type: 'uniform' min: -1 max: 3",
    "xavier": "type: 'xavier'",
    "xavier_fan_out": "type: 'xavier' variance_norm: FAN_OUT",
    "xavier_average": "type: 'xavier' variance_norm: AVERAGE",
    "msra": "type: 'msra'",
    "msra_fan_out": "type: 'msra' variance_norm: FAN_OUT",
    "msra_average": "type: 'msra' variance_norm: AVERAGE",
    "positive_unitball": "type: 'positive_unitball'",
}


def filler_net():
    layers = ['name: "fillers"',
              'layer { name: "in" type: "Input" top: "x" '
              'input_param { shape { dim: 1 dim: 40 dim: 5 dim: 5 } } }']
    for name, filler in FILLERS.items():
        layers.append(f'layer {{ name: "{name}" type: "Convolution" bottom: "x" top: "{name}" '
                      f'convolution_param {{ num_output: 120 kernel_size: 3 bias_term: false '
                      f'weight_filler {{ {filler} }} }} }}')
    layers.append('layer { name: "bilinear" type: "Convolution" bottom: "x" top: "bilinear" '
                  'convolution_param { num_output: 40 group: 40 kernel_size: 4 bias_term: false '
                  'weight_filler { type: "bilinear" } } }')
    return "\n".join(layers) + "\n"


@pytest.fixture(scope="module")
def filled(stock, tmp_path_factory):
    case = Case("fillers", filler_net(), "TEST", {}, backward=False, random_weights=False)
    [(ours, theirs)] = run_cases([case], tmp_path_factory.mktemp("fillers"), stock)
    return ours, theirs


@pytest.mark.parametrize("name", ["constant", "bilinear"])
def test_deterministic_fillers_are_identical(filled, name):
    ours, theirs = filled
    assert np.array_equal(ours[f"param|{name}|0"], theirs[f"param|{name}|0"])


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical
    distribution functions."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    points = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, points, "right") / a.size
                         - np.searchsorted(b, points, "right") / b.size))


@pytest.mark.parametrize("name", [n for n in FILLERS if n != "constant"])
def test_random_fillers_have_caffes_distribution(filled, name):
    ours, theirs = filled
    a, b = ours[f"param|{name}|0"], theirs[f"param|{name}|0"]  # 120 x 40 x 3 x 3 values
    assert a.shape == b.shape
    # same distribution: KS test at significance 1e-6 (critical value 2.69 * sqrt(2 / n))
    assert ks_statistic(a, b) < 2.69 * np.sqrt(2 / a.size)
    assert abs(a.std() - b.std()) < 0.03 * b.std()
    if name == "uniform":
        assert a.min() >= -1 and a.max() < 3
    if name == "positive_unitball":
        assert a.min() >= 0 and np.allclose(a.reshape(120, -1).sum(1), 1, atol=1e-5)


POLICIES = {
    "fixed": "",
    "step": "gamma: 0.5 stepsize: 4",
    "exp": "gamma: 0.9",
    "inv": "gamma: 0.1 power: 0.75",
    "multistep": "gamma: 0.5 stepvalue: 3 stepvalue: 7 stepvalue: 8",
    "poly": "power: 1.5",
    "sigmoid": "gamma: 0.5 stepsize: 6",
}


def engine_rates(solver_text, iterations):
    param = text_format.Parse(solver_text, caffe_pb2.SolverParameter())
    step, out = 0, {}
    glog.configure(min_level=2)
    try:
        for i in range(iterations):
            rate, step = lr_policy.learning_rate(param, i, step)
            out[i] = glog.number(rate)
    finally:
        glog.configure(min_level=0)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_learning_rates_print_as_stock_caffe_prints_them(stock, tmp_path, policy):
    text = (f'net: "{NETS / "tiny_train.prototxt"}" base_lr: 0.01 lr_policy: "{policy}" '
            f"{POLICIES[policy]} max_iter: 12 display: 1 snapshot_after_train: false "
            f'snapshot_prefix: "{tmp_path / "x"}"\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(text)
    log = stock.run_caffe(["train", "-solver", solver], cwd=tmp_path).stderr
    stock_rates = {int(i): v for i, v in re.findall(r"\] Iteration (\d+), lr = (\S+)", log)}
    assert len(stock_rates) == 12
    assert engine_rates(text, 12) == stock_rates
