"""LeNet for MNIST: Caffe's examples/mnist/lenet_train_test.prototxt (the demo's network)."""
from sepnets.nets.netspec import XAVIER, NetSpec, accuracy, conv, inner_product, pool, relu, softmax_loss
from sepnets.nets.zoo.common import mnist_data

LEARN = (dict(lr_mult=1), dict(lr_mult=2))
BIAS = dict(type="constant")


def build():
    n = NetSpec("LeNet")
    data = mnist_data(n)
    x = conv(n, "conv1", data, param=LEARN, num_output=20, kernel_size=5, stride=1,
             weight_filler=XAVIER, bias_filler=BIAS)
    x = pool(n, "pool1", x, pool="MAX", kernel_size=2, stride=2)
    x = conv(n, "conv2", x, param=LEARN, num_output=50, kernel_size=5, stride=1,
             weight_filler=XAVIER, bias_filler=BIAS)
    x = pool(n, "pool2", x, pool="MAX", kernel_size=2, stride=2)
    x = inner_product(n, "ip1", x, param=LEARN, num_output=500, weight_filler=XAVIER,
                      bias_filler=BIAS)
    relu(n, "relu1", x)
    score = inner_product(n, "ip2", x, param=LEARN, num_output=10, weight_filler=XAVIER,
                          bias_filler=BIAS)
    accuracy(n, "accuracy", score, phase="TEST")
    softmax_loss(n, "loss", score)
    return n.net
