"""The engine's layers, one module per family; importing this package registers them all."""
from sepnets.engine.layers import (  # noqa: F401
    common,
    hdf5,
    inputs,
    loss,
    neuron,
    normalization,
    recurrent,
    vision,
)
from sepnets.engine.layers.base import (  # noqa: F401
    REFUSED,
    REGISTRY,
    BuildContext,
    Layer,
    LayerError,
    check_type,
    create,
    source_shapes,
)
