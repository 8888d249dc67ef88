"""The engine's layers, one module per family; importing this package registers them all."""
from sepnets.engine.layers import common, inputs, loss, neuron, normalization, vision  # noqa: F401
from sepnets.engine.layers.base import REGISTRY, BuildContext, Layer, LayerError, check_type, create  # noqa: F401
