"""Pattern binarization, the paper's step 2, and what goes with it.

    selection   which convolutions a filter spec (3x3, 5x5, kxk, 1x1, ...) selects: one rule for
                what is binarized, frozen for fine-tuning and counted as patterns in B/BQ sizes
    binarize    w -> +a if w > 0 else -a: where the offset (or per-filter scale) is applied;
                the error measures and pattern statistics
    quantize    a caffemodel's selected layers binarized, the offset sweep, the predicted sizes
    finetune    the fine-tune net and solver with the pattern layers frozen (lr_mult 0)
    pack        the packed B/BQ file (1 bit a pattern weight) and its reader
    figures     the --stats pattern figures (matplotlib)

May import sepnets.caffe, sepnets.nets (analysis, for sizes) and the top-level modules.
File names of what it writes: sepnets.names.
"""
