"""A small NetSpec-like builder over caffe_pb2: layers are appended in order, each call returns
the name of the blob it makes, so a network reads like its data flow.

Every field is set only when given, so a generated layer can equal a hand-written prototxt
message for message (protobuf text keeps "stride: 1" and an absent stride apart).
"""
from sepnets.caffe.proto import caffe_pb2

# ParamSpecs: weights learn at the base rate with weight decay, biases at twice the rate
# without (Caffe's reference nets); BatchNorm's statistics are never learned.
WEIGHTS_AND_BIAS = (dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0))
WEIGHTS = (dict(lr_mult=1, decay_mult=1),)
FROZEN_STATS = (dict(lr_mult=0, decay_mult=0),) * 3

MSRA = dict(type="msra")
XAVIER = dict(type="xavier")
ZERO = dict(type="constant", value=0)

# convolution_param fields that are repeated in caffe.proto but given once here
_REPEATED_SPATIAL = ("kernel_size", "pad", "stride", "dilation")


class NetSpec:
    """Builds a caffe_pb2.NetParameter layer by layer."""

    def __init__(self, name=None):
        self.net = caffe_pb2.NetParameter()
        if name:
            self.net.name = name

    def layer(self, name, type, bottoms=(), tops=None, **fields):
        """Appends a layer; `tops` defaults to the layer's name. Returns the first top."""
        bottoms = [bottoms] if isinstance(bottoms, str) else list(bottoms)
        tops = [name] if tops is None else [tops] if isinstance(tops, str) else list(tops)
        self.net.layer.add().CopyFrom(
            caffe_pb2.LayerParameter(name=name, type=type, bottom=bottoms, top=tops, **fields))
        return tops[0]


def _conv_fields(fields):
    return {k: [v] if k in _REPEATED_SPATIAL and isinstance(v, int) else v
            for k, v in fields.items()}


def conv(n, name, bottom, top=None, param=WEIGHTS_AND_BIAS, **convolution_param):
    """Convolution; convolution_param fields as keywords (kernel_size=3, pad=1, group=4, ...)."""
    return n.layer(name, "Convolution", bottom, top, param=list(param),
                   convolution_param=_conv_fields(convolution_param))


def inner_product(n, name, bottom, param=WEIGHTS_AND_BIAS, **inner_product_param):
    return n.layer(name, "InnerProduct", bottom, param=list(param),
                   inner_product_param=inner_product_param)


def relu(n, name, blob):
    """In-place ReLU."""
    return n.layer(name, "ReLU", blob, blob)


def pool(n, name, bottom, **pooling_param):
    return n.layer(name, "Pooling", bottom, pooling_param=pooling_param)


def dropout(n, name, blob, ratio):
    """In-place Dropout."""
    return n.layer(name, "Dropout", blob, blob, dropout_param=dict(dropout_ratio=ratio))


def eltwise_sum(n, name, bottoms):
    return n.layer(name, "Eltwise", bottoms, eltwise_param=dict(operation="SUM"))


def batch_norm(n, name, blob):
    """In-place BatchNorm that uses batch statistics in TRAIN and the stored ones in TEST
    (Caffe's default; Caffe 1.0 also keeps the statistics out of the solver's updates)."""
    return n.layer(name, "BatchNorm", blob, blob)


def batch_norm_by_phase(n, name, blob):
    """The authors' ResNet style: two in-place BatchNorm layers of one name, the TRAIN one
    with batch statistics, the TEST one with the stored statistics, both frozen for the solver."""
    for phase, global_stats in (("TRAIN", False), ("TEST", True)):
        n.layer(name, "BatchNorm", blob, blob, param=list(FROZEN_STATS),
                include=[dict(phase=phase)],
                batch_norm_param=dict(use_global_stats=global_stats))
    return blob


def scale(n, name, blob):
    """In-place Scale with bias: BatchNorm's learned scale and shift."""
    return n.layer(name, "Scale", blob, blob, scale_param=dict(bias_term=True))


def data_layer(n, name, phase, source, backend, batch_size, transform, tops=("data", "label"),
               **fields):
    """A Data layer of one phase reading a LevelDB/LMDB database."""
    return n.layer(name, "Data", (), tops, include=[dict(phase=phase)],
                   transform_param=transform,
                   data_param=dict(source=source, batch_size=batch_size, backend=backend),
                   **fields)


def softmax_loss(n, name, score, label="label", top=None, **fields):
    return n.layer(name, "SoftmaxWithLoss", (score, label), top, **fields)


def accuracy(n, name, score, label="label", top=None, top_k=None, phase=None):
    """Accuracy; top_k and a phase rule only when given (top_k 1 is Caffe's default)."""
    fields = {}
    if phase:
        fields["include"] = [dict(phase=phase)]
    if top_k is not None:
        fields["accuracy_param"] = dict(top_k=top_k)
    return n.layer(name, "Accuracy", (score, label), top, **fields)
