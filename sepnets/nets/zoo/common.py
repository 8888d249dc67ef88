"""What the network descriptions share: the datasets (Data layers reading the databases the
data targets build under data/, sepnets.names' paths, relative to the working root) and the
solvers."""
from sepnets import names
from sepnets.nets.netspec import XAVIER, ZERO, accuracy, data_layer, inner_product, softmax_loss

IMAGENET_MEAN = [104, 117, 123]  # BGR, as BVLC GoogLeNet and the authors' file


def mnist_data(n):
    """Caffe's LeNet example: pixels scaled to [0, 1), no mean."""
    for phase, source, batch in (("TRAIN", names.mnist_db("train"), 64),
                                 ("TEST", names.mnist_db("test"), 100)):
        data_layer(n, "mnist", phase, source, "LMDB", batch, dict(scale=0.00390625))
    return "data"


def cifar10_data(n):
    """The authors' third CIFAR-10 variant: 40x40 padded training images randomly cropped to
    32x32 and mirrored, each phase with its own mean file. Their file also carries an
    image_data_param (ignored by Data layers); it is kept so the layers compare equal."""
    files = names.cifar10_files("highway-padded", "leveldb")
    data_layer(n, "data", "TRAIN", files["train"], "LEVELDB", 128,
               dict(mirror=True, crop_size=32, mean_file=files["paddedmean"]),
               image_data_param=dict(shuffle=True))
    data_layer(n, "data", "TEST", files["test"], "LEVELDB", 100,
               dict(mirror=False, crop_size=32, mean_file=files["mean"]))
    return "data"


def imagenet_data(n, crop=224):
    """ILSVRC-2012 resized to 256, random 224 crops and mirroring for training, center crops
    for validation, mean values subtracted (BVLC GoogLeNet's settings, used for every ImageNet
    net here)."""
    for phase, source, batch, mirror in (("TRAIN", names.imagenet_db("train"), 128, True),
                                         ("TEST", names.imagenet_db("val"), 50, False)):
        data_layer(n, "data", phase, source, "LMDB", batch,
                   dict(mirror=mirror, crop_size=crop, mean_value=IMAGENET_MEAN))
    return "data"


def imagenet_classifier(n, features, name="classifier"):
    """The 1000-way fully connected classifier with its loss, and top-1 and top-5 accuracy in
    TEST. Returns the scores blob."""
    score = inner_product(n, name, features, num_output=1000, weight_filler=XAVIER,
                          bias_filler=ZERO)
    softmax_loss(n, "loss", score)
    accuracy(n, "accuracy", score, phase="TEST")
    accuracy(n, "accuracy_top5", score, phase="TEST", top_k=5)
    return score


# Solver settings (the net path, snapshot prefix and solver mode are added per network).
LENET_SOLVER = dict(  # Caffe's examples/mnist/lenet_solver.prototxt
    test_iter=[100], test_interval=500, base_lr=0.01, momentum=0.9, weight_decay=0.0005,
    lr_policy="inv", gamma=0.0001, power=0.75, display=100, max_iter=10000, snapshot=5000)

RESNET_SOLVER = dict(  # the authors' resnet20_solver.prototxt
    test_iter=[100], test_interval=1000, base_lr=0.1, momentum=0.9, weight_decay=0.0001,
    lr_policy="multistep", gamma=0.1, stepvalue=[48000, 64000], display=100, max_iter=80000,
    snapshot=10000)

QUICK_SOLVER = dict(  # the authors' googlenet quick_solver.prototxt (BVLC's quick schedule)
    test_iter=[1000], test_interval=4000, test_initialization=False, display=40,
    average_loss=40, base_lr=0.01, lr_policy="poly", power=0.5, max_iter=600000, momentum=0.9,
    weight_decay=0.0002, snapshot=40000)
