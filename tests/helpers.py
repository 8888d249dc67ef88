"""Test helpers shared by several test modules: nets with Input layers instead of Data layers
(no database needed) and stock pycaffe's view of nets (blob and parameter shapes, and a
forward pass), several nets per pycaffe process to keep the suite fast."""
from sepnets import caffeio, netinfo
from sepnets.proto import caffe_pb2

# pycaffe side: for each "path|PHASE" argument, every blob's and every parameter's shape; for
# "path|PHASE|forward", also a forward pass on random data with BatchNorm statistics set to
# mean 0, variance 1 (untrained nets have none), reporting the output blobs.
STOCK_NETS = """
import sys, json, caffe, numpy as np
np.random.seed(0)
out = {}
for spec in sys.argv[1:]:
    path, phase, *forward = spec.split("|")
    net = caffe.Net(path, getattr(caffe, phase))
    entry = {"blobs": {k: list(v.data.shape) for k, v in net.blobs.items()},
             "params": {k: [list(b.data.shape) for b in v] for k, v in net.params.items()}}
    if forward:
        for layer in net.layers:
            if layer.type == "BatchNorm":
                layer.blobs[0].data[...] = 0
                layer.blobs[1].data[...] = 1
                layer.blobs[2].data[...] = 1
        for name in net.inputs:
            net.blobs[name].data[...] = np.random.randn(*net.blobs[name].data.shape)
        result = net.forward()
        entry["outputs"] = {k: v.tolist() for k, v in result.items()}
    out[spec] = entry
print(json.dumps(out))
"""


def stock_nets(stock, specs, timeout=600):
    """{spec: {"blobs", "params"[, "outputs"]}} from one pycaffe process; specs are
    "path|PHASE" or "path|PHASE|forward"."""
    return stock.run_pycaffe_json(STOCK_NETS, [str(s) for s in specs], timeout=timeout)


def with_input_layers(src, dst, batch, image=None):
    """The net with every Data layer replaced by an Input layer of `batch` images of shape
    `image` (channels, height, width; default 3 x crop x crop) and `batch` labels."""
    net = caffeio.read_net(src)
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
    caffeio.write_text(dst, out)
    return dst


def assert_shapes_match(stock_view, path, phase):
    """netinfo's shapes for the net at `path` equal stock Caffe's (`stock_view`, one entry of
    stock_nets). Returns the NetInfo."""
    info = netinfo.analyze(path, phase)
    ours = info.blob_shapes
    # Caffe inserts Split layers (blobs named *_split_N) where a blob has several consumers
    stock_blobs = {k: tuple(v) for k, v in stock_view["blobs"].items() if "_split_" not in k}
    assert {k: ours[k] for k in stock_blobs} == stock_blobs
    assert set(ours) == set(stock_blobs)
    ours_params = {l.name: [tuple(s) for s in l.param_shapes] for l in info.layers if l.param_shapes}
    assert ours_params == {k: [tuple(s) for s in v] for k, v in stock_view["params"].items()}
    return info


def assert_shapes_match_stock(stock, path, phase):
    """Like assert_shapes_match, running pycaffe for this one net."""
    view = stock_nets(stock, [f"{path}|{phase}"])[f"{path}|{phase}"]
    return assert_shapes_match(view, path, phase)
