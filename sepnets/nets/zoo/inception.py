"""Customized-Inception: an Inception-type net of about 5.10M parameters whose 3x3
binarization leaves about 2.43M real-valued (the paper's numbers). The design and its
reasons are in prototxt/customized_inception/README.md."""
from sepnets.nets.blocks import conv_bn, inception
from sepnets.nets.netspec import MSRA, NetSpec, dropout, pool
from sepnets.nets.zoo import googlenet
from sepnets.nets.zoo.common import imagenet_classifier, imagenet_data


def three_quarters(stage):
    """A GoogLeNet stage (sepnets.nets.googlenet.STAGES) at 3/4 of its widths, each rounded to
    the nearest multiple of 8 (at least 16; Python's round: halves to even), its 5x5 width used
    for the double-3x3 branch; the last module keeps GoogLeNet's widths so the classifier sees
    1024 features. A pooling keeps its short name."""
    if isinstance(stage, str):
        return stage.split("/")[0]
    name, *widths = stage
    if name == "inception_5b":
        return stage
    return (name, *[max(16, 8 * round(w * 3 / 32)) for w in widths])


# (name, 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool projection) or "poolN", a
# 3x3/2 max pooling
STAGES = [three_quarters(stage) for stage in googlenet.STAGES]
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
    imagenet_classifier(n, x)
    return n.net
