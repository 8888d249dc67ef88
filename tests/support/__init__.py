"""What the tests (and the benchmarks) share, imported as `tests.support.<module>`:

    project     the repository, the tests' own nets, the authors' files, running a command
    pycaffe     the one way to run stock pycaffe: a program of stock_programs/ by name
    engine      the conformance harness: one net in the engine and in stock pycaffe, compared
    nets        nets with Input layers instead of Data layers; stock Caffe's view of shapes
    data        what stock Caffe's Data layer reads from a database
    datagen     generated files in real formats (idx, CIFAR-10 archives, images)
    caffe_log   stock Caffe logs made for the log tests
    synthlog    synthetic Caffe training logs (tests and bench_plot_log)
    parse_log_ref  Caffe's own tools/extra/parse_log.py, from the pinned sdist
    models      caffemodels for a net with filled blobs
"""
