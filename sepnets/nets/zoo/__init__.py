"""The zoo: every network of the paper and its baselines — how to build its train_val net, the
shape of its deploy input, the final scores blob and its solver. `make nets` writes them under
prototxt/<name>/ (sepnets.nets.generate)."""
from dataclasses import dataclass
from functools import partial
from typing import Callable

from sepnets.nets.zoo import googlenet, inception, lenet, mobilenet, resnet, sepnet, squeezenet
from sepnets.nets.zoo.common import LENET_SOLVER, QUICK_SOLVER, RESNET_SOLVER

IMAGENET_INPUT = (1, 3, 224, 224)


@dataclass(frozen=True)
class Network:
    name: str              # directory under prototxt/, and the Makefile's train-<name>
    build: Callable        # () -> caffe_pb2.NetParameter, the train_val net
    input_shape: tuple     # the deploy net's Input (batch 1)
    score: str             # the final scores blob; deploy adds Softmax "prob" on it
    solver: dict           # SolverParameter fields besides net, snapshot_prefix, solver_mode
    reported: str          # what the SEP-Nets paper (or the net's own paper) reports


NETWORKS = [
    Network("lenet", lenet.build, (1, 1, 28, 28), "ip2", LENET_SOLVER,
            "Caffe's MNIST example"),
    *[Network(f"resnet{depth}", partial(resnet.build, depth), (1, 3, 32, 32), "score",
              RESNET_SOLVER, f"{reported} (He et al., identity shortcuts)")
      for depth, reported in ((20, "0.27M"), (32, "0.46M"), (44, "0.66M"), (56, "0.85M"))],
    Network("googlenet", googlenet.build, IMAGENET_INPUT, "loss3/classifier", QUICK_SOLVER,
            "6.99M; 4.43M after 3x3 binarization"),
    Network("customized_inception", inception.build, IMAGENET_INPUT, "classifier",
            QUICK_SOLVER, "5.10M; 2.43M after 3x3 binarization"),
    Network("sepnet_small", partial(sepnet.build, "small"), IMAGENET_INPUT, "classifier",
            QUICK_SOLVER, "1.3M; R 5.2, B 4.2, BQ 1.3 MB"),
    Network("sepnet_large", partial(sepnet.build, "large"), IMAGENET_INPUT, "classifier",
            QUICK_SOLVER, "1.7M; R 6.7 MB"),
    *[Network(f"mobilenet_{width}", partial(mobilenet.build, width), IMAGENET_INPUT, "fc7",
              QUICK_SOLVER, f"{reported} (Howard et al.)")
      for width, reported in (("0.5", "1.3M, 149M MACs"), ("0.75", "2.6M, 325M MACs"),
                              ("1.0", "4.2M, 569M MACs"))],
    Network("squeezenet_1.0", squeezenet.build, IMAGENET_INPUT, "pool10", QUICK_SOLVER,
            "1.2M; 4.8 MB (1,248,424 in Iandola et al.)"),
]
BY_NAME = {net.name: net for net in NETWORKS}
