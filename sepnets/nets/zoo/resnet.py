"""ResNet-20/32/44/56 for CIFAR-10, laid out and named exactly like the authors'
resnet20_relu_msra_cifar10.prototxt: 16-32-64 channels, (depth - 2) / 6 basic blocks per
stage, phase-split BatchNorm, Scale with bias, msra fillers, 3x3 stride-2 projection
shortcuts, global average pooling, a 10-way `score`, top-1 and top-5 accuracy."""
from sepnets.nets.blocks import conv_bn, resnet_block
from sepnets.nets.netspec import (
    MSRA,
    WEIGHTS_AND_BIAS,
    ZERO,
    NetSpec,
    accuracy,
    batch_norm_by_phase,
    inner_product,
    pool,
    softmax_loss,
)
from sepnets.nets.zoo.common import cifar10_data


def build(depth):
    if (depth - 2) % 6:
        raise ValueError(f"ResNet depth {depth} is not 6n + 2")
    blocks = (depth - 2) // 6
    n = NetSpec(f"ResNet-{depth}")
    x = cifar10_data(n)
    x = conv_bn(n, x, "conv1", "bn_conv1", "scale_conv1", "relu_conv1", norm=batch_norm_by_phase,
                param=WEIGHTS_AND_BIAS, num_output=16, pad=1, kernel_size=3, stride=1,
                weight_filler=MSRA, bias_filler=ZERO)
    for channels in (16, 32, 64):
        for i in range(1, blocks + 1):
            stride = 2 if i == 1 and channels != 16 else 1
            x = resnet_block(n, x, f"map{channels}_{i}", channels, stride)
    x = pool(n, "pool_global", x, pool="AVE", global_pooling=True)
    score = inner_product(n, "score", x, num_output=10,
                          weight_filler=dict(type="gaussian", std=0.01), bias_filler=ZERO)
    softmax_loss(n, "loss", score)
    accuracy(n, "acc/top1", score, top="acctop1", top_k=1)
    accuracy(n, "acc/top5", score, top="acctop5", top_k=5)
    return n.net
