"""The compiled upstream caffe.proto (`make setup` builds it; see sepnets/caffe/proto_build.py)."""
try:
    from sepnets.caffe._generated import caffe_pb2  # noqa: F401  (re-exported)
except ImportError as exc:  # pragma: no cover - only before `make setup`
    raise ImportError("sepnets: caffe_pb2 is not built yet: run 'make setup' "
                      "(it compiles upstream caffe.proto with grpcio-tools)") from exc

# Every layer type registered in BVLC Caffe 1.0 (REGISTER_LAYER_CLASS / REGISTER_LAYER_CREATOR
# in src/caffe/layers at the commit Debian bullseye builds): an unknown type is an error there.
CAFFE_LAYER_TYPES = frozenset("""
AbsVal Accuracy ArgMax BNLL BatchNorm BatchReindex Bias Clip Concat ContrastiveLoss Convolution
Crop Data Deconvolution Dropout DummyData ELU Eltwise Embed EuclideanLoss Exp Filter Flatten
HDF5Data HDF5Output HingeLoss Im2col ImageData InfogainLoss InnerProduct Input LRN LSTM LSTMUnit
Log MVN MemoryData MultinomialLogisticLoss PReLU Parameter Pooling Power Python RNN ReLU Reduction
Reshape SPP Scale Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss Split
Swish TanH Threshold Tile WindowData
""".split())
