"""MobileNet (v1) with width multiplier 0.5, 0.75 or 1.0, the paper's baselines.

Depthwise convolutions are Caffe group convolutions with group = channels; every
convolution is followed by BatchNorm + Scale + ReLU and has no bias; names follow the common
Caffe port (conv2_1/dw, conv2_1/sep, ..., pool6, fc7)."""
from sepnets.nets.blocks import conv_bn
from sepnets.nets.netspec import MSRA, NetSpec, pool
from sepnets.nets.zoo.common import imagenet_classifier, imagenet_data

# (block name, output channels at width 1.0, stride of the depthwise 3x3)
BLOCKS = [("2_1", 64, 1), ("2_2", 128, 2), ("3_1", 128, 1), ("3_2", 256, 2), ("4_1", 256, 1),
          ("4_2", 512, 2), ("5_1", 512, 1), ("5_2", 512, 1), ("5_3", 512, 1), ("5_4", 512, 1),
          ("5_5", 512, 1), ("5_6", 1024, 2), ("6", 1024, 1)]


def build(width):
    alpha = float(width)
    n = NetSpec(f"MobileNet-{width}")
    x = imagenet_data(n)
    channels = int(32 * alpha)
    x = conv_bn(n, x, "conv1", "conv1/bn", "conv1/scale", "relu1", num_output=channels,
                kernel_size=3, pad=1, stride=2, bias_term=False, weight_filler=MSRA)
    for block, out, stride in BLOCKS:
        dw = f"conv{block}/dw"
        x = conv_bn(n, x, dw, f"{dw}/bn", f"{dw}/scale", f"relu{block}/dw",
                    num_output=channels, group=channels, kernel_size=3, pad=1, stride=stride,
                    bias_term=False, weight_filler=MSRA)
        channels = int(out * alpha)
        sep = f"conv{block}/sep"
        x = conv_bn(n, x, sep, f"{sep}/bn", f"{sep}/scale", f"relu{block}/sep",
                    num_output=channels, kernel_size=1, bias_term=False, weight_filler=MSRA)
    x = pool(n, "pool6", x, pool="AVE", global_pooling=True)
    imagenet_classifier(n, x, "fc7")
    return n.net
