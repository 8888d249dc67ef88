"""Test helpers shared by several test modules (and the benchmarks): nets with Input layers
instead of Data layers (no database needed) or with their TRAIN Data layer reading a given
database; the conformance nets (LeNet, the authors' ResNet-20 and GoogLeNet stem, a SEP
module); stock pycaffe's view of nets (blob and parameter shapes, and a forward pass),
several nets per pycaffe process to keep the suite fast."""
from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from sepnets.nets import analysis
from tests.support import pycaffe
from tests.support.project import NETS


def stock_nets(stock, specs, timeout=600):
    """{spec: {"blobs", "params"[, "outputs"]}} from one pycaffe process (stock_programs/
    net_shapes.py); specs are "path|PHASE" or "path|PHASE|forward"."""
    return pycaffe.run_json("net_shapes", *specs, timeout=timeout)


def with_input_layers(src, dst, batch, image=None):
    """The net with every Data layer replaced by an Input layer of `batch` images of shape
    `image` (channels, height, width; default 3 x crop x crop) and `batch` labels."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if layer.type == "Data":
            crop = layer.transform_param.crop_size
            new = out.layer.add(name=layer.name, type="Input", top=layer.top)
            new.include.extend(layer.include)
            new.input_param.shape.add(dim=[batch, *(image or (3, crop, crop))])
            new.input_param.shape.add(dim=[batch])
        else:
            out.layer.add().CopyFrom(layer)
    files.write_text(dst, out)
    return dst


def with_input(src, dst, shape, cut_after=None, force_backward=False):
    """`src` with its Data (or Input) layers replaced by one Input layer (data, label) of
    `shape`, optionally cut after layer `cut_after`."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter(name=net.name, force_backward=force_backward)
    data = out.layer.add(name="data", type="Input", top=["data", "label"])
    data.input_param.shape.add(dim=shape)
    data.input_param.shape.add(dim=shape[:1])
    for layer in net.layer:
        if layer.type in ("Data", "Input"):
            continue
        out.layer.add().CopyFrom(layer)
        if layer.name == cut_after:
            break
    files.write_text(dst, out)
    return str(dst)


def conformance_nets(authors, directory, batch=None):
    """(name, prototxt, input shape, classes) of the nets the engine is proven on: LeNet,
    the authors' ResNet-20, their GoogLeNet through inception_3a, a SEP module (`batch`
    overrides each one's test batch)."""
    specs = [("lenet", None, (4, 1, 28, 28), 10), ("resnet20", None, (2, 3, 32, 32), 10),
             ("sep_module", None, (2, 16, 8, 8), 10),
             ("googlenet_inception_3a", "inception_3a/output", (1, 3, 64, 64), 1000)]
    sources = {"lenet": NETS / "engine" / "lenet.prototxt",
               "sep_module": NETS / "engine" / "sep_module.prototxt",
               "resnet20": authors / "resnet20_relu_msra_cifar10.prototxt",
               "googlenet_inception_3a": authors / "googlenet_train_val.prototxt"}
    out = []
    for name, cut, shape, classes in specs:
        shape = (batch or shape[0],) + shape[1:]
        if name in ("lenet", "sep_module") and batch is None:
            path = str(sources[name])
        else:
            path = with_input(sources[name], directory / f"{name}.prototxt", list(shape),
                              cut_after=cut, force_backward=cut is not None)
        out.append((name, path, shape, classes))
    return out


def with_data_layer(src, dst, source, batch, transform, backend=caffe_pb2.DataParameter.LMDB):
    """`src`'s TRAIN net with its Data layer (one is added to an Input-fed net) reading
    `source` at `batch`, with the TransformationParameter `transform`."""
    net = files.read_net(src)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    if not any(layer.type == "Data" for layer in net.layer):
        out.layer.add(name="data", type="Data", top=["data", "label"])
    for layer in net.layer:
        if layer.type == "Input" or any(rule.phase == caffe_pb2.TEST for rule in layer.include):
            continue
        out.layer.add().CopyFrom(layer)
    for layer in out.layer:
        if layer.type == "Data":
            layer.ClearField("image_data_param")
            layer.data_param.source = str(source)
            layer.data_param.backend = backend
            layer.data_param.batch_size = batch
            layer.transform_param.Clear()
            layer.transform_param.MergeFrom(transform)
    files.write_text(dst, out)
    return dst


def assert_shapes_match(stock_view, path, phase):
    """netinfo's shapes for the net at `path` equal stock Caffe's (`stock_view`, one entry of
    stock_nets). Returns the NetInfo."""
    info = analysis.analyze(path, phase)
    ours = info.blob_shapes
    # Caffe inserts Split layers (blobs named *_split_N) where a blob has several consumers
    stock_blobs = {k: tuple(v) for k, v in stock_view["blobs"].items() if "_split_" not in k}
    assert {k: ours[k] for k in stock_blobs} == stock_blobs
    assert set(ours) == set(stock_blobs)
    ours_params = {layer.name: [tuple(s) for s in layer.param_shapes]
                   for layer in info.layers if layer.param_shapes}
    assert ours_params == {k: [tuple(s) for s in v] for k, v in stock_view["params"].items()}
    return info


def assert_shapes_match_stock(stock, path, phase):
    """Like assert_shapes_match, running pycaffe for this one net."""
    view = stock_nets(stock, [f"{path}|{phase}"])[f"{path}|{phase}"]
    return assert_shapes_match(view, path, phase)
