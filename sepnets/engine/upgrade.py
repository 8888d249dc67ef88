"""The upgrade stock Caffe applies to a net when reading it (UpgradeNetAsNeeded) that matters
for the nets this engine reads: BatchNorm layers written for the older BatchNorm declare
three `param { lr_mult: 0 }` entries; Caffe sets their lr_mult and decay_mult to 0 and keeps
them. (The deprecated top-level input fields are upgraded by sepnets.netstate.filter_net; V1
`layers` nets are refused by sepnets.caffeio.read_net.)"""
from sepnets.engine import glog
from sepnets.proto import caffe_pb2


def needs_batch_norm_upgrade(net):
    return any(layer.type == "BatchNorm" and len(layer.param) == 3 for layer in net.layer)


def upgrade_net(net, source):
    """A copy of `net` upgraded as Caffe upgrades it (logging Caffe's lines), or `net`."""
    if not needs_batch_norm_upgrade(net):
        return net
    glog.info("upgrade_proto.cpp:79", "Attempting to upgrade batch norm layers using deprecated "
                                      f"params: {source}")
    upgraded = caffe_pb2.NetParameter()
    upgraded.CopyFrom(net)
    for layer in upgraded.layer:
        if layer.type == "BatchNorm" and len(layer.param) == 3:
            for spec in layer.param:
                spec.lr_mult = 0
                spec.decay_mult = 0
    glog.info("upgrade_proto.cpp:82", "Successfully upgraded batch norm layers using deprecated "
                                      "params.")
    return upgraded
