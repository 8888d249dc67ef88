"""SEP-Net (small and large) for ImageNet: pattern residual blocks and SEP modules with
4-group convolutions. The design and its reasons are in prototxt/sepnet/README.md."""
from sepnets.nets.blocks import conv_bn, pattern_residual_block, sep_module
from sepnets.nets.netspec import MSRA, NetSpec, pool
from sepnets.nets.zoo.common import imagenet_classifier, imagenet_data

GROUPS = 4
# Stages at 56, 28, 14 and 7 pixels, each entered through a 3x3/2 max pooling. A stage is a
# list of ("prb", channels): a pattern residual block, ("1x1", channels): a convolution (both
# without groups, so they mix the channels that the grouped modules keep apart), and
# ("sep", channels, bottleneck): a SEP module.
SMALL = [[("prb", 64)],
         [("1x1", 128), ("sep", 128, 64)],
         [("1x1", 256), ("sep", 256, 96)],
         [("1x1", 512), ("sep", 512, 128), ("1x1", 512), ("sep", 512, 128)]]
# large: one more mixing convolution and SEP module at 7x7
LAYOUTS = {"small": SMALL, "large": SMALL[:3] + [SMALL[3] + [("1x1", 512), ("sep", 512, 128)]]}


def build(size):
    n = NetSpec(f"SEP-Net-{size}")
    x = imagenet_data(n)
    x = conv_bn(n, x, "conv1", "conv1/bn", "conv1/scale", "conv1/relu", num_output=32,
                kernel_size=3, pad=1, stride=2, bias_term=False, weight_filler=MSRA)
    for stage, layers in enumerate(LAYOUTS[size], start=2):
        x = pool(n, f"pool{stage - 1}", x, pool="MAX", kernel_size=3, stride=2)
        for i, (kind, channels, *bottleneck) in enumerate(layers, start=1):
            name = f"conv{stage}_{i}" if kind != "sep" else f"sep{stage}_{i}"
            if kind == "prb":
                x = pattern_residual_block(n, name, x, channels)
            elif kind == "1x1":
                x = conv_bn(n, x, name, f"{name}/bn", f"{name}/scale", f"{name}/relu",
                            num_output=channels, kernel_size=1, bias_term=False,
                            weight_filler=MSRA)
            else:
                x = sep_module(n, name, x, channels, bottleneck[0], GROUPS)
    x = pool(n, "pool_global", x, pool="AVE", global_pooling=True)
    imagenet_classifier(n, x)
    return n.net
