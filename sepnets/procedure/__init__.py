"""The procedure: the paper's steps on a network's workspace, as the Makefile runs them.

    workspace   a network's prototxt/<net>/, models/<name>/ and logs/<name>/, and the models
                the steps made there, found by name (never by modification time)
    steps       train (resuming), quantize (quant_pattern.py), fine-tune (fix_pattern.py +
                caffe train --weights), evaluate (caffe test), plot (plot_log.py)
    demo        `make demo`: the whole procedure on LeNet / MNIST 5k
    report      results.md: the authors' table from what the steps measured

May import every part below it (caffe, nets, patterns, trainlog, datasets); the command lines
(sepnets.cli) import it. It runs the user's commands as subprocesses, so each step prints the
command a user would type.
"""
