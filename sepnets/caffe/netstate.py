"""Which layers a net has in a given phase/level/stages: Caffe's Net::FilterNet and
Net::StateMeetsRule, on the net as Caffe upgrades it (sepnets.caffe.upgrade)."""
from sepnets.caffe import upgrade
from sepnets.caffe.proto import caffe_pb2
from sepnets.errors import UserError

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def phase_value(phase):
    """'TRAIN'/'TEST' (any case) or the enum value -> the enum value."""
    if isinstance(phase, str):
        try:
            return PHASES[phase.upper()]
        except KeyError:
            raise UserError(f"unknown phase '{phase}' (TRAIN or TEST)") from None
    return phase


def state_meets_rule(state, rule):
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stage for stage in rule.stage):
        return False
    if any(stage in state.stage for stage in rule.not_stage):
        return False
    return True


def layer_included(layer, state):
    if len(layer.include) and len(layer.exclude):
        raise UserError(f"layer '{layer.name}': specify either include rules or exclude rules; not both")
    included = not len(layer.include)
    for rule in layer.exclude:
        if included and state_meets_rule(state, rule):
            included = False
    for rule in layer.include:
        if not included and state_meets_rule(state, rule):
            included = True
    return included


def filter_net(net, phase="TEST", level=0, stages=()):
    """The layers of `net` that Caffe instantiates for the given state, as a new NetParameter."""
    net = upgrade.upgrade_net(net)
    state = caffe_pb2.NetState()
    state.CopyFrom(net.state)
    state.phase = phase_value(phase)
    state.level = level or net.state.level
    state.stage.extend(s for s in stages if s not in state.stage)
    filtered = caffe_pb2.NetParameter()
    filtered.CopyFrom(net)
    del filtered.layer[:]
    filtered.state.CopyFrom(state)
    filtered.layer.extend(layer for layer in net.layer if layer_included(layer, state))
    return filtered
