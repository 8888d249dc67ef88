"""SEP-Nets toolkit: Caffe file I/O, network generators, pattern binarization, data, logs,
and a Caffe-semantics engine on PyTorch."""
