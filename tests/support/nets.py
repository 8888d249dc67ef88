"""Test helpers shared by several test modules: nets with Input layers instead of Data layers
(no database needed) and stock pycaffe's view of nets (blob and parameter shapes, and a
forward pass), several nets per pycaffe process to keep the suite fast."""
from sepnets.caffe import files
from sepnets.caffe.proto import caffe_pb2
from sepnets.nets import analysis
from tests.support import pycaffe


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
