"""Every engine layer type against stock pycaffe: same weights, inputs and output gradients;
forward outputs, input gradients and parameter gradients (and BatchNorm's updated
statistics) agree to 1e-5 of each blob's magnitude. All cases run in one pycaffe process."""
import numpy as np
import pytest

from tests.support.engine import Case, assert_conforms, layer_net, run_cases

R = np.random.default_rng(7)


def x(*shape):
    return R.standard_normal(shape).astype(np.float32)


def ints(low, high, *shape):
    """Small integers as float32: ties for MAX/Accuracy, labels."""
    return R.integers(low, high, shape).astype(np.float32)


def layer(name, type_, bottoms, tops, params="", extra=""):
    b = " ".join(f'bottom: "{n}"' for n in bottoms)
    t = " ".join(f'top: "{n}"' for n in tops)
    return f'layer {{ name: "{name}" type: "{type_}" {b} {t} {extra} {params} }}'


def case(name, type_, inputs, params="", tops=("y",), phase="TEST", extra="", backward=True,
         forwards=1):
    text = layer_net(name, layer(name, type_, list(inputs), list(tops), params, extra), inputs,
                     force_backward=backward)
    return Case(name, text, phase, inputs, backward=backward, forwards=forwards)


FILLED = "weight_filler { type: 'gaussian' std: 0.1 } bias_filler { type: 'constant' value: 0.2 }"

CASES = [
    case("conv", "Convolution", {"x": x(2, 3, 7, 7)},
         f"convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {FILLED} }}"),
    case("conv_group_dilation_rect", "Convolution", {"x": x(2, 4, 9, 8)},
         "convolution_param { num_output: 6 group: 2 dilation: 2 stride: 2 kernel_h: 3 "
         "kernel_w: 2 pad_h: 2 pad_w: 0 bias_term: false }"),
    case("conv_depthwise_two_bottoms", "Convolution", {"x": x(2, 4, 5, 5), "x2": x(2, 4, 5, 5)},
         "convolution_param { num_output: 4 group: 4 kernel_size: 3 stride: 2 }",
         tops=("y", "y2")),
    case("conv_1x1_group", "Convolution", {"x": x(2, 6, 4, 4)},
         "convolution_param { num_output: 3 group: 3 kernel_size: 1 }"),
    case("inner_product", "InnerProduct", {"x": x(3, 2, 3, 4)},
         "inner_product_param { num_output: 5 }"),
    case("inner_product_axis2_transpose", "InnerProduct", {"x": x(3, 2, 6)},
         "inner_product_param { num_output: 4 axis: 2 transpose: true }"),
    case("relu", "ReLU", {"x": x(2, 3, 4, 4)}),
    case("relu_leaky", "ReLU", {"x": x(2, 3, 4, 4)}, "relu_param { negative_slope: 0.1 }"),
    case("sigmoid", "Sigmoid", {"x": x(2, 3, 4)}),
    case("tanh", "TanH", {"x": x(2, 3, 4)}),
    case("pool_max_ceil", "Pooling", {"x": x(2, 3, 9, 9)},
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"),
    case("pool_max_pad", "Pooling", {"x": x(2, 3, 8, 7)},
         "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }"),
    case("pool_max_ties", "Pooling", {"x": ints(-2, 3, 2, 2, 6, 6)},
         "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
    case("pool_max_big_pad", "Pooling", {"x": x(1, 2, 6, 6)},
         "pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 2 }"),
    case("pool_ave_pad", "Pooling", {"x": x(2, 3, 8, 7)},
         "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }"),
    case("pool_ave_rect_floor", "Pooling", {"x": x(2, 3, 9, 8)},
         "pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 "
         "round_mode: FLOOR }"),
    case("pool_ave_big_pad", "Pooling", {"x": x(1, 2, 5, 5)},
         "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }"),
    case("pool_global_ave", "Pooling", {"x": x(2, 3, 5, 6)},
         "pooling_param { pool: AVE global_pooling: true }"),
    case("lrn_across", "LRN", {"x": x(2, 7, 4, 4)},
         "lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }"),
    case("lrn_within", "LRN", {"x": x(2, 3, 5, 5)},
         "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL }"),
    case("concat", "Concat", {"a": x(2, 1, 3, 3), "b": x(2, 4, 3, 3), "c": x(2, 2, 3, 3)}),
    case("concat_axis2", "Concat", {"a": x(2, 3, 2), "b": x(2, 3, 5)},
         "concat_param { axis: 2 }"),
    case("slice", "Slice", {"x": x(2, 6, 3)}, "slice_param { axis: 1 slice_point: 1 "
         "slice_point: 4 }", tops=("a", "b", "c")),
    case("eltwise_sum_coeff", "Eltwise", {"a": x(2, 3, 4), "b": x(2, 3, 4), "c": x(2, 3, 4)},
         "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }"),
    case("eltwise_prod", "Eltwise", {"a": x(2, 3, 4), "b": x(2, 3, 4), "c": x(2, 3, 4)},
         "eltwise_param { operation: PROD }"),
    case("eltwise_max_ties", "Eltwise", {"a": ints(-2, 3, 2, 3, 4), "b": ints(-2, 3, 2, 3, 4),
                                         "c": ints(-2, 3, 2, 3, 4)},
         "eltwise_param { operation: MAX }"),
    case("dropout_test_phase", "Dropout", {"x": x(2, 3, 4)}, "dropout_param { dropout_ratio: 0.3 }"),
    case("softmax", "Softmax", {"x": x(2, 5, 3, 2)}),
    case("softmax_axis2", "Softmax", {"x": x(2, 3, 4)}, "softmax_param { axis: 2 }"),
    case("softmax_loss_valid_ignore", "SoftmaxWithLoss",
         {"x": x(2, 4, 3, 3), "label": ints(0, 4, 2, 1, 3, 3)},
         "loss_param { ignore_label: 2 } loss_weight: 2", tops=("loss",)),
    case("softmax_loss_full", "SoftmaxWithLoss", {"x": x(3, 5), "label": ints(0, 5, 3)},
         "loss_param { normalization: FULL }", tops=("loss",)),
    case("softmax_loss_batch", "SoftmaxWithLoss",
         {"x": x(2, 3, 4), "label": ints(0, 3, 2, 4)},
         "loss_param { normalization: BATCH_SIZE ignore_label: 0 }", tops=("loss",)),
    case("softmax_loss_none", "SoftmaxWithLoss", {"x": x(4, 3) * 30, "label": ints(0, 3, 4)},
         "loss_param { normalization: NONE }", tops=("loss",)),
    case("softmax_loss_normalize_false", "SoftmaxWithLoss",
         {"x": x(2, 3, 2), "label": ints(0, 3, 2, 2)},
         "loss_param { normalize: false }", tops=("loss",)),
    case("accuracy_top1", "Accuracy", {"x": ints(0, 3, 6, 4), "label": ints(0, 4, 6)},
         tops=("acc", "per_class"), backward=False),
    case("accuracy_top3_ignore_axis", "Accuracy",
         {"x": ints(0, 4, 2, 5, 3), "label": ints(0, 5, 2, 3)},
         "accuracy_param { top_k: 3 ignore_label: 1 axis: 1 }", tops=("acc",), backward=False),
    case("batchnorm_train", "BatchNorm", {"x": x(3, 4, 3, 2) * 3 + 1},
         "batch_norm_param { moving_average_fraction: 0.9 eps: 0.001 }", phase="TRAIN"),
    case("batchnorm_train_twice", "BatchNorm", {"x": x(2, 3, 4)},
         "", phase="TRAIN", forwards=2),
    case("batchnorm_test", "BatchNorm", {"x": x(3, 4, 3, 2)}, phase="TEST"),
    case("batchnorm_global_in_train", "BatchNorm", {"x": x(3, 4, 3, 2)},
         "batch_norm_param { use_global_stats: true }", phase="TRAIN"),
    case("scale_bias", "Scale", {"x": x(2, 3, 4, 4)}, "scale_param { bias_term: true }"),
    case("scale_axis0_two_axes", "Scale", {"x": x(2, 3, 4)},
         "scale_param { axis: 0 num_axes: 2 filler { type: 'uniform' } }"),
    case("scale_two_bottoms", "Scale", {"x": x(2, 3, 4, 2), "s": x(3, 4)},
         "scale_param { bias_term: true }"),
    case("bias", "Bias", {"x": x(2, 3, 4)}),
    case("flatten", "Flatten", {"x": x(2, 3, 4, 5)}, "flatten_param { axis: 1 end_axis: 2 }"),
    case("reshape", "Reshape", {"x": x(2, 3, 4)},
         "reshape_param { shape { dim: 0 dim: -1 dim: 2 } }"),
    case("split", "Split", {"x": x(2, 3)}, tops=("a", "b")),
]


def _dummy_data_case():
    text = ('name: "dummy"\nlayer { name: "d" type: "DummyData" top: "a" top: "b" '
            'dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
            'data_filler { type: "constant" value: 1.5 } data_filler { type: "constant" value: -2 } } }\n')
    return Case("dummy_data", text, "TEST", {}, backward=False, random_weights=False)


def _multi_layer_cases():
    """Net-level parameter semantics on small nets: shared blobs (strict and PERMISSIVE), a
    loss_weight on non-loss tops, propagate_down: false."""
    shared = layer_net("shared_params", "\n".join([
        'layer { name: "a" type: "InnerProduct" bottom: "x" top: "ya" param { name: "w" } '
        'param { name: "b" } inner_product_param { num_output: 4 } }',
        # force_backward overrides propagate_down: false in Caffe
        'layer { name: "b" type: "InnerProduct" bottom: "x" top: "yb" param { name: "w" } '
        'propagate_down: false inner_product_param { num_output: 4 } }',
        # weight (6, 4) shares the (4, 6) blob's 24 values
        'layer { name: "t" type: "InnerProduct" bottom: "x2" top: "yt" '
        'param { name: "w" share_mode: PERMISSIVE } inner_product_param { num_output: 6 '
        'bias_term: false } }']), {"x": x(2, 6), "x2": x(3, 4)})
    weighted = layer_net("loss_weights_propagate_down", "\n".join([
        'layer { name: "h" type: "InnerProduct" bottom: "x" top: "h" inner_product_param { num_output: 4 } }',
        'layer { name: "p" type: "InnerProduct" bottom: "h" top: "p" propagate_down: false '
        'loss_weight: 1 inner_product_param { num_output: 3 } }',
        'layer { name: "q" type: "InnerProduct" bottom: "h" top: "q" loss_weight: 0.5 '
        'inner_product_param { num_output: 3 } }']), {"x": x(2, 5)}, force_backward=False)
    return [Case("shared_params", shared, "TEST", {"x": x(2, 6), "x2": x(3, 4)}),
            Case("loss_weights_propagate_down", weighted, "TRAIN", {"x": x(2, 5)},
                 top_diffs=False)]


CASES.append(_dummy_data_case())
CASES += _multi_layer_cases()


# Random in both engines (different generators): compared by its statistics below.
DROPOUT = case("dropout_train_phase", "Dropout", {"x": np.ones((4, 50, 50), np.float32)},
               "dropout_param { dropout_ratio: 0.3 }", phase="TRAIN")


@pytest.fixture(scope="module")
def results(stock, tmp_path_factory):
    pairs = run_cases(CASES + [DROPOUT], tmp_path_factory.mktemp("layers"), stock)
    return {c.name: p for c, p in zip(CASES + [DROPOUT], pairs)}


@pytest.mark.parametrize("layer_case", CASES, ids=lambda c: c.name)
def test_layer_matches_stock_caffe(results, layer_case):
    assert_conforms([results[layer_case.name]], [layer_case])


def test_dropout_in_training_drops_and_scales_like_stock_caffe(results):
    """Each value is kept with probability 1 - ratio and scaled by 1 / (1 - ratio); the
    gradient passes through the same mask and scale."""
    for side in results["dropout_train_phase"]:
        y, dx = side["0|blob|y"], side["diff|x"]
        kept = y != 0
        assert set(np.unique(y)) == {0, np.float32(1) / (np.float32(1) - np.float32(0.3))}
        assert abs(1 - kept.mean() - 0.3) < 0.025  # 10,000 values: 5 standard errors
        assert np.array_equal(dx != 0, kept)
    ours, theirs = results["dropout_train_phase"]
    assert np.unique(ours["0|blob|y"]).tolist() == np.unique(theirs["0|blob|y"]).tolist()
