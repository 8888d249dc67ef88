"""Composite blocks for the network descriptions in sepnets/nets/: convolution + BatchNorm +
Scale + ReLU, the ResNet basic block (the authors' CIFAR-10 layout and names), the Inception
module, the pattern residual block and the SEP module."""
from sepnets.nets.netspec import (
    MSRA,
    WEIGHTS,
    WEIGHTS_AND_BIAS,
    ZERO,
    batch_norm,
    batch_norm_by_phase,
    conv,
    eltwise_sum,
    pool,
    relu,
    scale,
)


def conv_bn(n, bottom, name, bn_name, scale_name, relu_name=None, norm=batch_norm,
            param=WEIGHTS, **convolution_param):
    """Convolution, in-place BatchNorm and Scale, and an in-place ReLU when relu_name is given.
    Returns the convolution's blob."""
    top = conv(n, name, bottom, param=param, **convolution_param)
    norm(n, bn_name, top)
    scale(n, scale_name, top)
    if relu_name:
        relu(n, relu_name, top)
    return top


def resnet_block(n, bottom, prefix, channels, stride):
    """The authors' CIFAR-10 basic block `{prefix}_*`: conv_a (3x3, stride) -> BN -> Scale ->
    ReLU -> conv_b (3x3) -> BN -> Scale, added to the input (or, when the block changes the
    resolution, to a projection: like the authors, a 3x3 convolution with the same stride),
    then ReLU."""
    def unit(suffix, src, s, with_relu):
        return conv_bn(n, src, f"{prefix}_conv_{suffix}", f"{prefix}_bn_{suffix}",
                       f"{prefix}_scale_{suffix}",
                       f"{prefix}_relu_{suffix}" if with_relu else None,
                       norm=batch_norm_by_phase, param=WEIGHTS_AND_BIAS, num_output=channels, pad=1,
                       kernel_size=3, stride=s, weight_filler=MSRA, bias_filler=ZERO)

    shortcut = unit("proj", bottom, stride, False) if stride != 1 else bottom
    a = unit("a", bottom, stride, True)
    b = unit("b", a, 1, False)
    out = eltwise_sum(n, f"{prefix}_eltsum", (shortcut, b))
    return relu(n, f"{prefix}_relu_after_sum", out)


def inception(n, prefix, bottom, chains, pool_proj, unit):
    """An Inception module `{prefix}/*`: each chain is a list of (suffix, num_output, kernel)
    convolutions applied in turn to the input; then a 3x3 stride-1 max pooling followed by a
    1x1 `pool_proj`; the branches are concatenated into `{prefix}/output`.
    unit(n, prefix, suffix, bottom, num_output, kernel) builds one convolution (with its
    normalization and ReLU) and returns its blob."""
    outputs = []
    for chain in chains:
        top = bottom
        for suffix, num_output, kernel in chain:
            top = unit(n, prefix, suffix, top, num_output, kernel)
        outputs.append(top)
    pooled = pool(n, f"{prefix}/pool", bottom, pool="MAX", kernel_size=3, stride=1, pad=1)
    outputs.append(unit(n, prefix, "pool_proj", pooled, pool_proj, 1))
    return n.layer(f"{prefix}/output", "Concat", outputs)


def pattern_residual_block(n, name, bottom, num_output, group=1, stride=1, with_relu=True):
    """The paper's pattern residual block `{name}/*`: a 3x3 convolution (the pattern layer,
    binarized later) and a 1x1 convolution (a real-valued transformation) on the same input,
    summed, then BatchNorm, Scale and (optionally) ReLU. Both convolutions take `group` groups
    and `stride`; they have no bias since BatchNorm follows."""
    common = dict(num_output=num_output, stride=stride, bias_term=False, weight_filler=MSRA)
    if group != 1:
        common["group"] = group
    pattern = conv(n, f"{name}/3x3", bottom, param=WEIGHTS, kernel_size=3, pad=1, **common)
    linear = conv(n, f"{name}/1x1", bottom, param=WEIGHTS, kernel_size=1, **common)
    top = eltwise_sum(n, name, (pattern, linear))
    batch_norm(n, f"{name}/bn", top)
    scale(n, f"{name}/scale", top)
    if with_relu:
        relu(n, f"{name}/relu", top)
    return top


def sep_module(n, name, bottom, channels, bottleneck, group):
    """The SEP module `{name}/*`: a 1x1 group convolution reduces `channels` to `bottleneck`,
    two pattern residual blocks with group convolutions work at the bottleneck width, a 1x1
    group convolution expands back to `channels`, and the input is added (a residual
    connection) before the final ReLU."""
    grouped = dict(bias_term=False, weight_filler=MSRA, group=group, kernel_size=1)
    reduced = conv_bn(n, bottom, f"{name}/reduce", f"{name}/reduce/bn", f"{name}/reduce/scale",
                      f"{name}/reduce/relu", num_output=bottleneck, **grouped)
    top = pattern_residual_block(n, f"{name}/prb1", reduced, bottleneck, group)
    top = pattern_residual_block(n, f"{name}/prb2", top, bottleneck, group)
    expanded = conv_bn(n, top, f"{name}/expand", f"{name}/expand/bn", f"{name}/expand/scale",
                       num_output=channels, **grouped)
    out = eltwise_sum(n, name, (bottom, expanded))
    return relu(n, f"{name}/relu", out)
