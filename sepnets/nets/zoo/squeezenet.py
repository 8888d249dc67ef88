"""SqueezeNet 1.0 as released by its authors (DeepScale/SqueezeNet SqueezeNet_v1.0,
train_val.prototxt): conv1 7x7/2 96, fire2..fire9, dropout, conv10 (1x1, 1000, pad 1 as
released), global average pooling as the scores; loss in TRAIN, accuracies in TEST."""
from sepnets.nets.netspec import XAVIER, ZERO, NetSpec, accuracy, conv, dropout, pool, relu, softmax_loss
from sepnets.nets.zoo.common import imagenet_data

# (fire module, squeeze 1x1, expand 1x1 = expand 3x3); "poolN" is a 3x3/2 max pooling
LAYOUT = ["pool1", (2, 16, 64), (3, 16, 64), (4, 32, 128), "pool4", (5, 32, 128),
          (6, 48, 192), (7, 48, 192), (8, 64, 256), "pool8", (9, 64, 256)]


def conv_relu(n, name, relu_name, bottom, **convolution_param):
    return relu(n, relu_name, conv(n, name, bottom, bias_filler=ZERO, **convolution_param))


def fire(n, index, bottom, squeeze, expand):
    p = f"fire{index}"
    s = conv_relu(n, f"{p}/squeeze1x1", f"{p}/relu_squeeze1x1", bottom, num_output=squeeze,
                  kernel_size=1, weight_filler=XAVIER)
    e1 = conv_relu(n, f"{p}/expand1x1", f"{p}/relu_expand1x1", s, num_output=expand,
                   kernel_size=1, weight_filler=XAVIER)
    e3 = conv_relu(n, f"{p}/expand3x3", f"{p}/relu_expand3x3", s, num_output=expand, pad=1,
                   kernel_size=3, weight_filler=XAVIER)
    return n.layer(f"{p}/concat", "Concat", (e1, e3))


def build():
    n = NetSpec("SqueezeNet-1.0")
    x = imagenet_data(n)
    x = conv_relu(n, "conv1", "relu_conv1", x, num_output=96, kernel_size=7, stride=2,
                  weight_filler=XAVIER)
    for item in LAYOUT:
        if isinstance(item, str):
            x = pool(n, item, x, pool="MAX", kernel_size=3, stride=2)
        else:
            x = fire(n, item[0], x, *item[1:])
    dropout(n, "drop9", x, 0.5)
    x = conv_relu(n, "conv10", "relu_conv10", x, num_output=1000, pad=1, kernel_size=1,
                  weight_filler=dict(type="gaussian", mean=0.0, std=0.01))
    score = pool(n, "pool10", x, pool="AVE", global_pooling=True)
    softmax_loss(n, "loss", score, include=[dict(phase="TRAIN")])
    accuracy(n, "accuracy", score, phase="TEST")
    accuracy(n, "accuracy_top5", score, phase="TEST", top_k=5)
    return n.net
