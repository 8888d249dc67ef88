"""GoogLeNet: BVLC's models/bvlc_googlenet/train_val.prototxt as the authors trained it
(googlenet_train_val.prototxt: batch 128), with its two auxiliary classifiers."""
from sepnets.nets.blocks import inception
from sepnets.nets.netspec import (
    XAVIER,
    ZERO,
    NetSpec,
    accuracy,
    conv,
    dropout,
    inner_product,
    pool,
    relu,
    softmax_loss,
)
from sepnets.nets.zoo.common import imagenet_data

BIAS = dict(type="constant", value=0.2)

# (name, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection); "pool" is a 3x3/2 max pooling
STAGES = [
    ("inception_3a", 64, 96, 128, 16, 32, 32), ("inception_3b", 128, 128, 192, 32, 96, 64),
    "pool3/3x3_s2",
    ("inception_4a", 192, 96, 208, 16, 48, 64), ("inception_4b", 160, 112, 224, 24, 64, 64),
    ("inception_4c", 128, 128, 256, 24, 64, 64), ("inception_4d", 112, 144, 288, 32, 64, 64),
    ("inception_4e", 256, 160, 320, 32, 128, 128),
    "pool4/3x3_s2",
    ("inception_5a", 256, 160, 320, 32, 128, 128), ("inception_5b", 384, 192, 384, 48, 128, 128),
]
AUX_AFTER = {"inception_4a": "loss1", "inception_4d": "loss2"}


def conv_relu(n, name, relu_name, bottom, num_output, kernel, stride=None):
    fields = dict(num_output=num_output, kernel_size=kernel, weight_filler=XAVIER, bias_filler=BIAS)
    if kernel > 1:
        fields["pad"] = kernel // 2
    if stride:
        fields["stride"] = stride
    top = conv(n, name, bottom, **fields)
    return relu(n, relu_name, top)


def unit(n, prefix, suffix, bottom, num_output, kernel):
    return conv_relu(n, f"{prefix}/{suffix}", f"{prefix}/relu_{suffix}", bottom, num_output, kernel)


def inception_module(n, bottom, name, c1, c3r, c3, c5r, c5, proj):
    chains = [[("1x1", c1, 1)], [("3x3_reduce", c3r, 1), ("3x3", c3, 3)],
              [("5x5_reduce", c5r, 1), ("5x5", c5, 5)]]
    return inception(n, name, bottom, chains, proj, unit)


def classifier(n, name, bottom, loss_top, loss_weight):
    score = inner_product(n, name, bottom, num_output=1000, weight_filler=XAVIER, bias_filler=ZERO)
    prefix = name.split("/")[0]
    loss_name = f"{prefix}/loss" if prefix != "loss3" else "loss3/loss3"
    softmax_loss(n, loss_name, score, top=loss_top, loss_weight=[loss_weight])
    accuracy(n, f"{prefix}/top-1", score, phase="TEST")
    accuracy(n, f"{prefix}/top-5", score, phase="TEST", top_k=5)


def auxiliary_head(n, prefix, bottom):
    """The training-time classifier on an intermediate output (loss weight 0.3)."""
    x = pool(n, f"{prefix}/ave_pool", bottom, pool="AVE", kernel_size=5, stride=3)
    x = conv_relu(n, f"{prefix}/conv", f"{prefix}/relu_conv", x, 128, 1)
    x = inner_product(n, f"{prefix}/fc", x, num_output=1024, weight_filler=XAVIER, bias_filler=BIAS)
    relu(n, f"{prefix}/relu_fc", x)
    dropout(n, f"{prefix}/drop_fc", x, 0.7)
    classifier(n, f"{prefix}/classifier", x, f"{prefix}/{prefix}", 0.3)


def build():
    n = NetSpec("GoogleNet")
    x = imagenet_data(n)
    x = conv_relu(n, "conv1/7x7_s2", "conv1/relu_7x7", x, 64, 7, stride=2)
    x = pool(n, "pool1/3x3_s2", x, pool="MAX", kernel_size=3, stride=2)
    x = n.layer("pool1/norm1", "LRN", x, lrn_param=dict(local_size=5, alpha=0.0001, beta=0.75))
    x = conv_relu(n, "conv2/3x3_reduce", "conv2/relu_3x3_reduce", x, 64, 1)
    x = conv_relu(n, "conv2/3x3", "conv2/relu_3x3", x, 192, 3)
    x = n.layer("conv2/norm2", "LRN", x, lrn_param=dict(local_size=5, alpha=0.0001, beta=0.75))
    x = pool(n, "pool2/3x3_s2", x, pool="MAX", kernel_size=3, stride=2)
    for stage in STAGES:
        if isinstance(stage, str):
            x = pool(n, stage, x, pool="MAX", kernel_size=3, stride=2)
            continue
        x = inception_module(n, x, *stage)
        if stage[0] in AUX_AFTER:
            auxiliary_head(n, AUX_AFTER[stage[0]], x)
    x = pool(n, "pool5/7x7_s1", x, pool="AVE", kernel_size=7, stride=1)
    dropout(n, "pool5/drop_7x7_s1", x, 0.4)
    classifier(n, "loss3/classifier", x, "loss3/loss3", 1)
    return n.net
