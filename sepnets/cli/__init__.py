"""The command lines, one module per command, named as the command: argparse and `main` only
(the thin scripts at the top level and in tools/ run them). Each `main(argv)` parses, checks
what only a command line can get wrong, and calls the domain modules with plain arguments.

    quant_pattern  fix_pattern  unpack_pattern  plot_log  netinfo  make_nets  pipeline
    prepare_mnist  prepare_cifar10  prepare_imagenet  export_onnx   (flags: shared flag groups)

May import every other part of sepnets; nothing imports it (but the scripts).
"""
