"""SEP-Nets toolkit: a Caffe-faithful reproduction of "SEP-Nets: Small and Effective Pattern
Networks" (Li, Wang, Lv, Yang, 2017). One subpackage per part; each imports only the parts
before it in this list:

    caffe/      Caffe's files and rules, stock Caffe (no torch)
    engine/     Caffe's semantics on PyTorch: `python -m sepnets.caffe train|test|time`
    nets/       the network descriptions, prototxt generation, netinfo's analysis
    datasets/   MNIST, CIFAR-10, ImageNet lists into Caffe's databases
    trainlog/   Caffe's training logs: scan, parse, figure, summary
    patterns/   pattern binarization: selection, binarize, quantize, fine-tune files, pack
    procedure/  the paper's procedure on a workspace: train, quant, finetune, eval, demo
    cli/        one module per command (argparse and main only)

and, for every part: errors (the one-line user errors), names (every file name the toolkit
reads back or writes), paths (the repository, the working root, the shared files),
bootstrap (scripts re-run with the project's virtualenv).
"""
