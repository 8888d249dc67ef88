"""Every layer type the ONNX exporter converts, option by option, against stock Caffe: a net of
one layer (Input layers for its bottoms), random weights in a caffemodel, random inputs; ONNX
Runtime's tops equal stock pycaffe's TEST forward within 1e-4 of each top's magnitude. All
cases run in one pycaffe process."""
import numpy as np
import pytest

from sepnets import deploy
from sepnets.caffe import files
from tests.support.deploy import Job, assert_matches_stock, run_stock
from tests.support.engine import layer_net
from tests.support.models import model_for

R = np.random.default_rng(14)


def x(*shape):
    return R.standard_normal(shape).astype(np.float32)


def ints(low, high, *shape):
    """Small integers as float32: ties for MAX."""
    return R.integers(low, high, shape).astype(np.float32)


def batch_norm_blobs(channels, factor):
    """BatchNorm's blobs as Caffe stores them: mean and variance sums times the factor."""
    return [0.3 * R.standard_normal(channels).astype(np.float32) * np.float32(factor),
            R.uniform(0.5, 1.5, channels).astype(np.float32) * np.float32(factor),
            np.array([factor], np.float32)]


CASES = []


def case(name, type_, inputs, params="", tops=("y",), blobs=None):
    """A one-layer net `name`; blobs: that layer's parameter blobs (default: random normal)."""
    bottoms = " ".join(f'bottom: "{b}"' for b in inputs)
    top_text = " ".join(f'top: "{t}"' for t in tops)
    text = layer_net(name, f'layer {{ name: "{name}" type: "{type_}" {bottoms} {top_text} {params} }}',
                     inputs, force_backward=False)
    CASES.append((name, text, inputs, blobs))


case("conv", "Convolution", {"x": x(2, 3, 7, 7)}, "convolution_param { num_output: 4 kernel_size: 3 pad: 1 }")
case("conv_group_dilation_rect", "Convolution", {"x": x(2, 4, 9, 8)},
     "convolution_param { num_output: 6 group: 2 dilation: 2 stride: 2 kernel_h: 3 kernel_w: 2 "
     "pad_h: 2 pad_w: 0 bias_term: false }")
case("conv_depthwise_two_bottoms", "Convolution", {"x": x(2, 4, 5, 5), "x2": x(2, 4, 5, 5)},
     "convolution_param { num_output: 4 group: 4 kernel_size: 3 stride: 2 }", tops=("y", "y2"))
case("conv_1x1_group", "Convolution", {"x": x(2, 6, 4, 4)},
     "convolution_param { num_output: 3 group: 3 kernel_size: 1 }")
case("conv_stride_per_axis", "Convolution", {"x": x(1, 2, 9, 7)},
     "convolution_param { num_output: 3 kernel_size: 3 kernel_size: 2 stride: 2 stride: 1 pad: 1 pad: 0 }")
case("inner_product", "InnerProduct", {"x": x(3, 2, 3, 4)}, "inner_product_param { num_output: 5 }")
case("inner_product_axis2_transpose", "InnerProduct", {"x": x(3, 2, 6)},
     "inner_product_param { num_output: 4 axis: 2 transpose: true }")
case("inner_product_axis2_no_bias", "InnerProduct", {"x": x(2, 3, 2, 2)},
     "inner_product_param { num_output: 3 axis: 2 bias_term: false }")
case("relu", "ReLU", {"x": x(2, 3, 4, 4)})
case("relu_leaky", "ReLU", {"x": x(2, 3, 4, 4)}, "relu_param { negative_slope: 0.1 }")
case("sigmoid", "Sigmoid", {"x": x(2, 3, 4)})
case("tanh", "TanH", {"x": x(2, 3, 4)})
case("pool_max_ceil", "Pooling", {"x": x(2, 3, 9, 9)}, "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
case("pool_max_ceil_overhang", "Pooling", {"x": x(2, 3, 8, 8)},
     "pooling_param { pool: MAX kernel_size: 3 stride: 2 }")
case("pool_max_pad", "Pooling", {"x": x(2, 3, 8, 7)},
     "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 }")
case("pool_max_big_pad", "Pooling", {"x": x(1, 2, 6, 6)},
     "pooling_param { pool: MAX kernel_size: 3 stride: 1 pad: 2 }")
case("pool_max_last_window_dropped", "Pooling", {"x": x(2, 2, 4, 4)},
     "pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 2 }")
case("pool_max_ties", "Pooling", {"x": ints(-2, 3, 2, 2, 6, 6)},
     "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
case("pool_max_rect_floor", "Pooling", {"x": x(2, 3, 9, 8)},
     "pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 round_mode: FLOOR }")
case("pool_max_stride_over_kernel", "Pooling", {"x": x(1, 2, 11, 10)},
     "pooling_param { pool: MAX kernel_size: 2 stride: 3 }")
case("pool_ave_stride_over_kernel_floor", "Pooling", {"x": x(1, 2, 10, 9)},
     "pooling_param { pool: AVE kernel_size: 2 stride: 3 round_mode: FLOOR }")
case("pool_ave_pad", "Pooling", {"x": x(2, 3, 8, 7)},
     "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 }")
case("pool_ave_ceil_overhang", "Pooling", {"x": x(2, 3, 8, 8)},
     "pooling_param { pool: AVE kernel_size: 3 stride: 2 }")
case("pool_ave_big_pad", "Pooling", {"x": x(1, 2, 5, 5)},
     "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }")
case("pool_ave_last_window_dropped", "Pooling", {"x": x(2, 2, 4, 4)},
     "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 2 }")
case("pool_ave_rect_pad_hw", "Pooling", {"x": x(2, 3, 9, 8)},
     "pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 1 }")
case("pool_ave_rect_floor", "Pooling", {"x": x(2, 3, 9, 8)},
     "pooling_param { pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 round_mode: FLOOR }")
case("pool_global_ave", "Pooling", {"x": x(2, 3, 5, 6)}, "pooling_param { pool: AVE global_pooling: true }")
case("pool_global_max", "Pooling", {"x": x(2, 3, 5, 6)}, "pooling_param { pool: MAX global_pooling: true }")
case("lrn_across", "LRN", {"x": x(2, 7, 4, 4)}, "lrn_param { local_size: 5 alpha: 0.3 beta: 0.75 k: 2 }")
case("lrn_across_defaults", "LRN", {"x": x(2, 4, 3, 3)}, "lrn_param { local_size: 3 }")
case("lrn_within", "LRN", {"x": x(2, 3, 5, 5)},
     "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 5 norm_region: WITHIN_CHANNEL }")
case("lrn_within_wide", "LRN", {"x": x(1, 2, 6, 4)},
     "lrn_param { local_size: 5 alpha: 2 beta: 0.5 norm_region: WITHIN_CHANNEL }")
case("batch_norm", "BatchNorm", {"x": x(2, 4, 3, 2) * 3 + 1},
     "batch_norm_param { eps: 0.001 }", blobs=batch_norm_blobs(4, 2.5))
case("batch_norm_factor_zero", "BatchNorm", {"x": x(2, 3, 3, 3)}, blobs=batch_norm_blobs(3, 0))
case("batch_norm_2d", "BatchNorm", {"x": x(3, 5)}, "batch_norm_param { use_global_stats: true }",
     blobs=batch_norm_blobs(5, 0.7))
case("batch_norm_3d", "BatchNorm", {"x": x(2, 3, 5)}, blobs=batch_norm_blobs(3, 1.5))
case("scale_bias", "Scale", {"x": x(2, 3, 4, 4)}, "scale_param { bias_term: true }")
case("scale_axis0_two_axes", "Scale", {"x": x(2, 3, 4)}, "scale_param { axis: 0 num_axes: 2 }")
case("scale_scalar", "Scale", {"x": x(2, 3, 4)}, "scale_param { num_axes: 0 bias_term: true }")
case("scale_two_bottoms", "Scale", {"x": x(2, 3, 4, 2), "s": x(3, 4)}, "scale_param { bias_term: true }")
case("scale_two_bottoms_axis0", "Scale", {"x": x(2, 3, 4), "s": x(2, 3)}, "scale_param { axis: 0 }")
case("bias", "Bias", {"x": x(2, 3, 4)})
case("bias_two_bottoms_axis2", "Bias", {"x": x(2, 3, 4, 5), "b": x(4, 5)}, "bias_param { axis: 2 }")
case("eltwise_sum", "Eltwise", {"a": x(2, 3, 4), "b": x(2, 3, 4)})
case("eltwise_sum_coeff", "Eltwise", {"a": x(2, 3, 4), "b": x(2, 3, 4), "c": x(2, 3, 4)},
     "eltwise_param { operation: SUM coeff: 1 coeff: -0.5 coeff: 2 }")
case("eltwise_prod", "Eltwise", {"a": x(2, 3, 4), "b": x(2, 3, 4), "c": x(2, 3, 4)},
     "eltwise_param { operation: PROD }")
case("eltwise_max_ties", "Eltwise", {"a": ints(-2, 3, 2, 3, 4), "b": ints(-2, 3, 2, 3, 4),
                                     "c": ints(-2, 3, 2, 3, 4)}, "eltwise_param { operation: MAX }")
case("concat", "Concat", {"a": x(2, 1, 3, 3), "b": x(2, 4, 3, 3), "c": x(2, 2, 3, 3)})
case("concat_axis2", "Concat", {"a": x(2, 3, 2), "b": x(2, 3, 5)}, "concat_param { axis: 2 }")
case("concat_negative_axis", "Concat", {"a": x(2, 3, 2), "b": x(2, 3, 1)}, "concat_param { axis: -1 }")
case("slice_points", "Slice", {"x": x(2, 6, 3)}, "slice_param { axis: 1 slice_point: 1 slice_point: 4 }",
     tops=("a", "b", "c"))
case("slice_equal_slice_dim", "Slice", {"x": x(2, 3, 4)}, "slice_param { slice_dim: 2 }", tops=("a", "b"))
case("split", "Split", {"x": x(2, 3)}, tops=("a", "b"))
case("dropout", "Dropout", {"x": x(2, 3, 4)}, "dropout_param { dropout_ratio: 0.3 }")
case("softmax", "Softmax", {"x": x(2, 5, 3, 2)})
case("softmax_axis2", "Softmax", {"x": x(2, 3, 4)}, "softmax_param { axis: 2 }")
case("softmax_axis_negative", "Softmax", {"x": x(2, 3, 4) * 5}, "softmax_param { axis: -1 }")
case("flatten", "Flatten", {"x": x(2, 3, 4, 5)})
case("flatten_axis1_end2", "Flatten", {"x": x(2, 3, 4, 5)}, "flatten_param { axis: 1 end_axis: 2 }")
case("reshape", "Reshape", {"x": x(2, 3, 4)}, "reshape_param { shape { dim: 0 dim: -1 dim: 2 } }")
case("reshape_axis_num_axes", "Reshape", {"x": x(2, 6, 4)},
     "reshape_param { axis: 1 num_axes: 1 shape { dim: 2 dim: 3 } }")
case("reshape_copy_later_axis", "Reshape", {"x": x(2, 3, 4)},
     "reshape_param { axis: 1 shape { dim: 0 dim: 2 dim: -1 } }")


def weights_for(net_path, blobs, seed):
    """A caffemodel for the one-layer net: `blobs` for its layer, or random normal ones."""
    rng = np.random.default_rng(seed)
    model = model_for(net_path, lambda shape: rng.standard_normal(shape).astype(np.float32))
    if blobs is not None:
        (name,) = list(model.blobs)
        model.blobs[name] = blobs
    return model


@pytest.fixture(scope="module")
def exported(stock, tmp_path_factory):
    directory = tmp_path_factory.mktemp("onnx_layers")
    jobs = {}
    for i, (name, text, inputs, blobs) in enumerate(CASES):
        net = directory / f"{name}.prototxt"
        net.write_text(text)
        weights = files.write_model(directory / f"{name}.caffemodel", weights_for(net, blobs, i))
        deploy.export(net, weights, directory / f"{name}.onnx")
        jobs[name] = Job(name, net, inputs, weights=weights)
    run_stock(list(jobs.values()), directory)
    return directory, jobs


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_layer_matches_stock_caffe(exported, name):
    directory, jobs = exported
    compared = assert_matches_stock(directory / f"{name}.onnx", jobs[name])
    assert set(compared) >= set(jobs[name].stock) - set(jobs[name].inputs)  # every top
