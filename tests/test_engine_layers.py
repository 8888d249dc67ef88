"""Every engine layer type against stock pycaffe: same weights, inputs and output gradients;
forward outputs, input gradients and parameter gradients (and BatchNorm's updated
statistics) agree to 1e-5 of each blob's magnitude. All cases run in one pycaffe process.

Layers whose Backward stock Caffe refuses under force_backward (for a bottom it cannot
back-propagate into) run in nets without it, after a learned Bias (whose parameter gradient
shows what reached the layer's input) and before a learned Scale carrying a loss weight
(random gradients into the layer's tops)."""
import dataclasses
import re

import numpy as np
import pytest

from sepnets.caffe import files, shapes
from sepnets.caffe.proto import CAFFE_LAYER_TYPES
from sepnets.engine import layers
from tests.support import pycaffe
from tests.support.engine import Case, assert_conforms, layer_net, run_cases
from tests.support.project import REPO

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


def positive(*shape):
    return np.abs(x(*shape)) + np.float32(0.2)


def case(name, type_, inputs, params="", tops=("y",), phase="TEST", extra="", backward=True,
         forwards=1, random_weights=True):
    text = layer_net(name, layer(name, type_, list(inputs), list(tops), params, extra), inputs,
                     force_backward=backward)
    return Case(name, text, phase, inputs, backward=backward, forwards=forwards,
                random_weights=random_weights)


def framed_case(name, type_, inputs, params="", framed=(0,), tops=("y",), scaled=True):
    """The layer between a learned Bias on each bottom in `framed` and (when `scaled`) a
    learned Scale with loss_weight 1 on each top, in a net without force_backward."""
    lines, bottoms = [], []
    for i, blob in enumerate(inputs):
        if i in framed:
            lines.append(layer(f"bias_{blob}", "Bias", [blob], [f"{blob}_b"],
                               "bias_param { axis: 1 num_axes: -1 }"))
            blob = f"{blob}_b"
        bottoms.append(blob)
    lines.append(layer(name, type_, bottoms, list(tops), params))
    for top in tops if scaled else ():
        lines.append(layer(f"scale_{top}", "Scale", [top], [f"{top}_s"],
                           "scale_param { axis: 1 num_axes: -1 }", "loss_weight: 1"))
    text = layer_net(name, "\n".join(lines), inputs, force_backward=False)
    return Case(name, text, "TEST", inputs, top_diffs=False)


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
    case("silence", "Silence", {"x": x(2, 3), "x2": x(4)}, tops=()),
]


PROBS = np.abs(x(4, 5)) + np.float32(0.05)
PROBS /= PROBS.sum(axis=1, keepdims=True)
PROBS[2, 3] = 0  # below kLOG_THRESHOLD: clamped in the loss, not in its gradient
INFOGAIN = np.abs(x(4, 4)) + np.eye(4, dtype=np.float32)
CONT = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)  # (T, N): 0 starts a sequence

CASES += [
    # neurons
    case("absval", "AbsVal", {"x": x(2, 3, 4)}),
    case("power_square_shift", "Power", {"x": x(2, 3, 4)},
         "power_param { power: 2 scale: 0.5 shift: 1 }"),
    case("power_cube", "Power", {"x": x(2, 3, 4)}, "power_param { power: 3 scale: -1.5 }"),
    case("power_root", "Power", {"x": positive(2, 3, 4)},
         "power_param { power: 0.5 scale: 2 shift: 0.1 }"),
    case("power_linear", "Power", {"x": x(2, 5)}, "power_param { scale: 3 shift: -1 }"),
    case("power_constant", "Power", {"x": x(2, 5)}, "power_param { power: 2 scale: 0 shift: 3 }"),
    case("power_zero", "Power", {"x": x(2, 5)}, "power_param { power: 0 }"),
    case("exp", "Exp", {"x": x(2, 3, 4)}),
    case("exp_base_scale_shift", "Exp", {"x": x(2, 3, 4)},
         "exp_param { base: 2 scale: 0.5 shift: 1 }"),
    case("log", "Log", {"x": positive(2, 3, 4)}),
    case("log_base_scale_shift", "Log", {"x": positive(2, 3, 4)},
         "log_param { base: 10 scale: 2 shift: 0.5 }"),
    case("bnll", "BNLL", {"x": x(2, 3, 4) * 20}),
    case("threshold", "Threshold", {"x": x(2, 3, 4)}, backward=False),
    case("threshold_value", "Threshold", {"x": x(2, 3, 4)}, "threshold_param { threshold: 0.3 }",
         backward=False),
    case("clip", "Clip", {"x": x(2, 3, 4)}, "clip_param { min: -0.5 max: 0.8 }"),
    case("swish", "Swish", {"x": x(2, 3, 4)}),
    case("swish_beta", "Swish", {"x": x(2, 3, 4)}, "swish_param { beta: 2 }"),
    case("elu", "ELU", {"x": x(2, 3, 4)}),
    case("elu_alpha", "ELU", {"x": x(2, 3, 4)}, "elu_param { alpha: 0.4 }"),
    case("prelu", "PReLU", {"x": x(2, 3, 4, 2)}),
    case("prelu_shared", "PReLU", {"x": x(2, 3, 4)}, "prelu_param { channel_shared: true }"),
    case("prelu_default_filler", "PReLU", {"x": x(2, 3, 4)}, random_weights=False),
    case("prelu_filler", "PReLU", {"x": x(2, 3, 4)},
         "prelu_param { filler { type: 'constant' value: -0.3 } }", random_weights=False),
    # vision
    case("deconv", "Deconvolution", {"x": x(2, 4, 4, 5)},
         f"convolution_param {{ num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 {FILLED} }}"),
    case("deconv_dilation_rect", "Deconvolution", {"x": x(2, 3, 4, 4)},
         "convolution_param { num_output: 2 kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2 "
         "dilation: 2 pad_h: 1 bias_term: false }"),
    case("deconv_two_bottoms", "Deconvolution", {"x": x(1, 2, 3, 3), "x2": x(1, 2, 3, 3)},
         "convolution_param { num_output: 3 kernel_size: 2 stride: 2 }", tops=("y", "y2")),
    case("im2col", "Im2col", {"x": x(2, 3, 5, 6)},
         "convolution_param { kernel_size: 3 pad: 1 stride: 2 }"),
    case("im2col_rect_dilation", "Im2col", {"x": x(1, 2, 7, 6)},
         "convolution_param { kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 pad_w: 1 "
         "dilation: 2 force_nd_im2col: true }"),
    case("spp_max", "SPP", {"x": x(2, 3, 9, 8)}, "spp_param { pyramid_height: 3 }"),
    case("spp_ave", "SPP", {"x": x(2, 2, 6, 7)}, "spp_param { pyramid_height: 2 pool: AVE }"),
    case("spp_one_level", "SPP", {"x": x(2, 2, 5, 4)}, "spp_param { pyramid_height: 1 }"),
    # structure
    case("crop_spatial", "Crop", {"x": x(2, 3, 7, 6), "ref": x(1, 1, 4, 3)},
         "crop_param { offset: 2 }"),
    case("crop_axis1_offsets", "Crop", {"x": x(2, 5, 6, 4), "ref": x(2, 3, 2, 4)},
         "crop_param { axis: 1 offset: 1 offset: 3 offset: 0 }"),
    case("crop_negative_axis_default_offset", "Crop", {"x": x(2, 3, 5), "ref": x(9, 9, 2)},
         "crop_param { axis: -1 }"),
    case("tile", "Tile", {"x": x(2, 3, 2)}, "tile_param { tiles: 3 }"),
    case("tile_last_axis", "Tile", {"x": x(2, 3)}, "tile_param { axis: -1 tiles: 2 }"),
    case("reduction_sum_all", "Reduction", {"x": x(2, 3, 4)}),
    case("reduction_mean_coeff", "Reduction", {"x": x(2, 3, 4)},
         "reduction_param { operation: MEAN axis: 1 coeff: 2 }"),
    case("reduction_asum", "Reduction", {"x": x(2, 3, 4)},
         "reduction_param { operation: ASUM axis: 2 }"),
    case("reduction_sumsq", "Reduction", {"x": x(2, 3, 4)},
         "reduction_param { operation: SUMSQ axis: -1 coeff: -0.5 }"),
    case("argmax_ties", "ArgMax", {"x": ints(0, 3, 3, 2, 3)}, backward=False),
    case("argmax_top3_values", "ArgMax", {"x": x(2, 7)},
         "argmax_param { top_k: 3 out_max_val: true }", backward=False),
    case("argmax_axis", "ArgMax", {"x": ints(0, 4, 2, 5, 3)}, "argmax_param { axis: 1 top_k: 2 }",
         backward=False),
    case("argmax_axis_values", "ArgMax", {"x": x(2, 3, 4)},
         "argmax_param { axis: -1 top_k: 2 out_max_val: true }", backward=False),
    framed_case("embed", "Embed", {"x": ints(0, 5, 2, 3)},
                "embed_param { num_output: 4 input_dim: 5 }", framed=()),
    framed_case("embed_no_bias", "Embed", {"x": ints(0, 3, 4)},
                "embed_param { num_output: 2 input_dim: 3 bias_term: false }", framed=()),
    framed_case("filter", "Filter", {"a": x(5, 3), "b": x(5, 2, 2),
                                     "sel": np.array([[1], [0], [1], [1], [0]], np.float32)},
                framed=(0, 1), tops=("ya", "yb")),
    framed_case("batch_reindex", "BatchReindex", {"x": x(4, 3),
                                                  "idx": np.array([3, 0, 3, 1, 2, 3], np.float32)}),
    case("parameter", "Parameter", {}, "parameter_param { shape { dim: 2 dim: 3 } }"),
    case("mvn", "MVN", {"x": x(2, 3, 4, 5) * 3 + 1}),
    case("mvn_across_channels_eps", "MVN", {"x": x(2, 3, 4)},
         "mvn_param { across_channels: true eps: 0.1 }"),
    case("mvn_mean_only", "MVN", {"x": x(2, 3, 2, 2)}, "mvn_param { normalize_variance: false }"),
    # losses
    case("euclidean_loss", "EuclideanLoss", {"a": x(3, 2, 3), "b": x(3, 6)}, tops=("loss",)),
    case("sigmoid_ce", "SigmoidCrossEntropyLoss",
         {"x": x(3, 4) * 3, "t": np.abs(x(3, 4)).clip(0, 1)}, tops=("loss",)),
    case("sigmoid_ce_ignore_valid", "SigmoidCrossEntropyLoss",
         {"x": x(2, 3, 2), "t": ints(0, 3, 2, 3, 2)},
         "loss_param { ignore_label: 2 normalization: VALID }", tops=("loss",)),
    case("sigmoid_ce_full", "SigmoidCrossEntropyLoss", {"x": x(2, 5), "t": ints(0, 2, 2, 5)},
         "loss_param { normalization: FULL } loss_weight: 0.5", tops=("loss",)),
    case("sigmoid_ce_normalize", "SigmoidCrossEntropyLoss", {"x": x(2, 5), "t": ints(0, 2, 2, 5)},
         "loss_param { normalize: true }", tops=("loss",)),
    case("hinge_l1", "HingeLoss", {"x": x(4, 5), "label": ints(0, 5, 4)}, tops=("loss",)),
    case("hinge_l2", "HingeLoss", {"x": x(3, 2, 2), "label": ints(0, 4, 3)},
         "hinge_loss_param { norm: L2 }", tops=("loss",)),
    case("multinomial_logistic", "MultinomialLogisticLoss",
         {"p": PROBS, "label": np.array([0, 4, 1, 1], np.float32)}, tops=("loss",)),
    case("multinomial_logistic_clamped", "MultinomialLogisticLoss",
         {"p": PROBS, "label": np.array([0, 4, 3, 1], np.float32)}, tops=("loss",)),
    case("infogain", "InfogainLoss", {"x": x(3, 4), "label": ints(0, 4, 3)},
         'infogain_loss_param { source: "INFOGAIN_SOURCE" }', tops=("loss", "prob"),
         extra="loss_weight: 1 loss_weight: 0"),
    case("infogain_axis_ignore_none", "InfogainLoss",
         {"x": x(2, 3, 4), "label": ints(0, 4, 2, 3)},
         'infogain_loss_param { source: "INFOGAIN_SOURCE" axis: 2 } '
         "loss_param { ignore_label: 1 normalization: NONE }", tops=("loss",)),
    framed_case("infogain_matrix_bottom", "InfogainLoss",
                {"x": x(3, 4), "label": ints(0, 4, 3), "h": INFOGAIN}, tops=("loss",),
                scaled=False),
    case("contrastive", "ContrastiveLoss",
         {"a": x(4, 3, 1, 1), "b": x(4, 3, 1, 1), "sim": np.array([1, 0, 0, 1], np.float32)},
         "contrastive_loss_param { margin: 3 }", tops=("loss",)),
    case("contrastive_legacy", "ContrastiveLoss",
         {"a": x(4, 3), "b": x(4, 3), "sim": np.array([0, 1, 0, 0], np.float32)},
         "contrastive_loss_param { margin: 4 legacy_version: true }", tops=("loss",)),
    # recurrent
    case("lstm_unit", "LSTMUnit", {"c": x(1, 3, 2), "gates": x(1, 3, 8),
                                   "cont": np.array([[1, 0, 0.5]], np.float32)}, tops=("c1", "h1")),
    case("rnn", "RNN", {"x": x(4, 2, 3), "cont": CONT},
         "recurrent_param { num_output: 3 weight_filler { type: 'gaussian' std: 0.3 } }",
         forwards=2),
    case("rnn_static_exposed", "RNN", {"x": x(4, 2, 2, 2), "cont": CONT, "s": x(2, 3),
                                       "h0": x(1, 2, 3)},
         "recurrent_param { num_output: 3 expose_hidden: true }", tops=("o", "hT"), forwards=2),
    case("lstm", "LSTM", {"x": x(4, 2, 3), "cont": CONT}, "recurrent_param { num_output: 2 }",
         forwards=2),
    case("lstm_static_exposed", "LSTM", {"x": x(4, 2, 3), "cont": CONT, "s": x(2, 2),
                                         "h0": x(1, 2, 2), "c0": x(1, 2, 2)},
         "recurrent_param { num_output: 2 expose_hidden: true }", tops=("h", "hT", "cT")),
]


def _dummy_data_case():
    text = ('name: "dummy"\nlayer { name: "d" type: "DummyData" top: "a" top: "b" '
            'dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } '
            'data_filler { type: "constant" value: 1.5 } data_filler { type: "constant" value: -2 } } }\n')
    return Case("dummy_data", text, "TEST", {}, backward=False, random_weights=False)


def _multi_layer_cases():
    """Net-level semantics on small nets: shared blobs (strict and PERMISSIVE), a loss_weight
    on non-loss tops, propagate_down: false, a batch a Filter shrinks."""
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
    # a Filter changes the batch after set-up; the loss after it follows (Caffe reshapes)
    filtered = {"x": x(5, 3), "label": ints(0, 3, 5), "sel": np.array([[0], [1], [1], [0], [1]],
                                                                      np.float32)}
    filter_loss = layer_net("filter_then_loss", "\n".join([
        layer("bias", "Bias", ["x"], ["xb"], "bias_param { axis: 1 }"),
        layer("filter", "Filter", ["xb", "label", "sel"], ["y", "yl"]),
        layer("loss", "SoftmaxWithLoss", ["y", "yl"], ["loss"],
              extra="propagate_down: true propagate_down: false")]), filtered,
        force_backward=False)
    return [Case("shared_params", shared, "TEST", {"x": x(2, 6), "x2": x(3, 4)}),
            Case("loss_weights_propagate_down", weighted, "TRAIN", {"x": x(2, 5)},
                 top_diffs=False),
            Case("filter_then_loss", filter_loss, "TEST", filtered, top_diffs=False)]


CASES.append(_dummy_data_case())
CASES += _multi_layer_cases()


# Random in both engines (different generators): compared by its statistics below.
DROPOUT = case("dropout_train_phase", "Dropout", {"x": np.ones((4, 50, 50), np.float32)},
               "dropout_param { dropout_ratio: 0.3 }", phase="TRAIN")


@pytest.fixture(scope="module")
def results(stock, tmp_path_factory):
    d = tmp_path_factory.mktemp("layers")
    source = files.write_blobproto(d / "infogain.binaryproto", INFOGAIN.reshape(1, 1, 4, 4),
                                     legacy=True)
    cases = [dataclasses.replace(c, prototxt=c.prototxt.replace("INFOGAIN_SOURCE", str(source)))
             for c in CASES + [DROPOUT]]
    pairs = run_cases(cases, d, stock)
    return {c.name: p for c, p in zip(cases, pairs)}


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


def test_readme_counts_the_layer_types_the_engine_supports(stock):
    """The engine's registry against Caffe 1.0's: every type stock Caffe registers is
    supported or refused with a reason, and the README's count and Supported list follow."""
    registered = set(pycaffe.run_json("layer_types"))
    assert registered == CAFFE_LAYER_TYPES
    supported = sorted(set(layers.REGISTRY) & registered)
    assert set(layers.REGISTRY) <= registered and set(layers.REFUSED) <= registered
    assert set(supported) | set(layers.REFUSED) == registered
    print(f"the engine supports {len(supported)} of the {len(registered)} layer types Caffe 1.0 "
          f"registers; refused: {', '.join(sorted(layers.REFUSED))}")
    readme = (REPO / "README.md").read_text()
    counted = re.search(r"The engine supports \*\*(\d+) of the (\d+)\*\* layer types", readme)
    assert counted, "the README's engine section must say how many layer types are supported"
    assert (int(counted[1]), int(counted[2])) == (len(supported), len(registered))
    listed = readme[readme.index("**Supported.**"):readme.index("**Refused with one line")]
    missing = [t for t in supported if not re.search(rf"\b{t}\b", listed)]
    assert not missing, f"the README's Supported list lacks {missing}"


def test_blob_counts_are_caffes_one_table():
    """Every type the engine builds has its bottom and top counts in Caffe's table
    (sepnets.caffe.shapes.BLOB_COUNTS, which shape inference and the engine's layers both
    check); the engine narrows it only where it implements fewer tops (MAX_TOPS)."""
    assert not set(layers.REGISTRY) - set(shapes.BLOB_COUNTS)
    narrowed = {t: cls.MAX_TOPS for t, cls in layers.REGISTRY.items() if cls.MAX_TOPS is not None}
    assert narrowed == {"Pooling": 1, "SoftmaxWithLoss": 1}
    for kind, most in narrowed.items():
        assert shapes.BLOB_COUNTS[kind][1][1] > most  # Caffe allows more
