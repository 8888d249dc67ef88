"""Customized-Inception: an Inception-type net of about 5.10M parameters whose 3x3
binarization leaves about 2.43M real-valued (the paper's numbers). The design and its
reasons are in prototxt/customized_inception/README.md."""
from sepnets.blocks import conv_bn, inception
from sepnets.netspec import (MSRA, NetSpec, XAVIER, ZERO, accuracy, dropout, inner_product,
                             pool, softmax_loss)
from sepnets.nets.common import imagenet_data

# (name, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool projection): GoogLeNet's
# widths times 3/4 (multiples of 8) with its 5x5 branch as two 3x3s; the last module keeps
# GoogLeNet's widths so the classifier sees 1024 features. "poolN" is a 3x3/2 max pooling.
STAGES = [
    ("inception_3a", 48, 72, 96, 16, 24, 24), ("inception_3b", 96, 96, 144, 24, 72, 48),
    "pool3",
    ("inception_4a", 144, 72, 160, 16, 32, 48), ("inception_4b", 120, 80, 168, 16, 48, 48),
    ("inception_4c", 96, 96, 192, 16, 48, 48), ("inception_4d", 80, 112, 216, 24, 48, 48),
    ("inception_4e", 192, 120, 240, 24, 96, 96),
    "pool4",
    ("inception_5a", 192, 120, 240, 24, 96, 96), ("inception_5b", 384, 192, 384, 48, 128, 128),
]
# Inception-v3's stem (3x3 convolutions instead of GoogLeNet's 7x7 and LRN):
# (name, num_output, kernel, stride) or a 3x3/2 max pooling
STEM = [("conv1", 32, 3, 2), ("conv2", 32, 3, 1), ("conv3", 64, 3, 1), "pool1",
        ("conv4", 80, 1, 1), ("conv5", 192, 3, 1), "pool2"]


def unit(n, prefix, suffix, bottom, num_output, kernel, stride=1):
    name = f"{prefix}/{suffix}" if prefix else suffix
    fields = dict(num_output=num_output, kernel_size=kernel, bias_term=False, weight_filler=MSRA)
    if kernel > 1:
        fields["pad"] = kernel // 2
    if stride > 1:
        fields["stride"] = stride
    return conv_bn(n, bottom, name, f"{name}/bn", f"{name}/scale", f"{name}/relu", **fields)


def build():
    n = NetSpec("Customized-Inception")
    x = imagenet_data(n)
    for item in STEM:
        if isinstance(item, str):
            x = pool(n, item, x, pool="MAX", kernel_size=3, stride=2)
        else:
            name, num_output, kernel, stride = item
            x = unit(n, None, name, x, num_output, kernel, stride)
    for stage in STAGES:
        if isinstance(stage, str):
            x = pool(n, stage, x, pool="MAX", kernel_size=3, stride=2)
            continue
        name, c1, c3r, c3, d3r, d3, proj = stage
        chains = [[("1x1", c1, 1)], [("3x3_reduce", c3r, 1), ("3x3", c3, 3)],
                  [("double3x3_reduce", d3r, 1), ("double3x3a", d3, 3), ("double3x3b", d3, 3)]]
        x = inception(n, name, x, chains, proj, unit)
    x = pool(n, "pool5", x, pool="AVE", global_pooling=True)
    dropout(n, "drop5", x, 0.4)
    score = inner_product(n, "classifier", x, num_output=1000, weight_filler=XAVIER,
                          bias_filler=ZERO)
    softmax_loss(n, "loss", score)
    accuracy(n, "accuracy", score, phase="TEST")
    accuracy(n, "accuracy_top5", score, phase="TEST", top_k=5)
    return n.net
