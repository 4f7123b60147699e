"""tfmot's `PruneLowMagnitude` wrapper, as a `tfprune.PruningWrapper`.

Which layers tfmot 0.8.1 prunes, and which weights of them, is its
registry (`prune_registry.py`): matched by exact class; layers that have
nothing to prune (activations, dropout, pooling, normalization, reshaping,
merging) are accepted and left as they are; any other layer needs a
`get_prunable_weights()` method (`PrunableLayer`), or is refused.
"""

from __future__ import annotations

import abc
import numbers

import keras

from tfprune import granularity as granularity_lib
from tfprune import strategies
from tfprune._base import keras_internals
from tfprune._base.validation import received
from tfprune._training import state as state_lib
from tfprune._training.wrapper import PruningWrapper
from tfprune.compat.tfmot import _schedules

__all__ = ["PrunableLayer", "PruneLowMagnitude", "support"]

L = keras.layers

# Layers whose weights tfmot prunes, by exact class: the names of those weights
# (None: every weight tfprune finds in the layer: MultiHeadAttention's four
# projection kernels, the kernel and recurrent kernel of each RNN cell).
_PRUNED = {
    L.Dense: {"kernel"}, L.Conv1D: {"kernel"}, L.Conv2D: {"kernel"}, L.Conv3D: {"kernel"},
    L.Conv2DTranspose: {"kernel"}, L.Conv3DTranspose: {"kernel"},
    L.Embedding: {"embeddings"},
    L.SeparableConv1D: {"pointwise_kernel"}, L.SeparableConv2D: {"pointwise_kernel"},
    L.MultiHeadAttention: None, L.SimpleRNN: None, L.LSTM: None, L.GRU: None,
}
_CELLS = (L.SimpleRNNCell, L.LSTMCell, L.GRUCell)

# Layers tfmot accepts and leaves dense (tfmot wraps them with a step
# counter only; here they stay as they are). `Rescaling` is meant to be one
# in tfmot too, which registers the wrong class for it.
_NOT_PRUNED = tuple(getattr(L, name) for name in (
    "ELU", "LeakyReLU", "ReLU", "Softmax", "Activation", "ActivityRegularization",
    "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "DepthwiseConv2D",
    "Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "Flatten", "Lambda", "Masking", "Permute", "RepeatVector", "Reshape",
    "Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract",
    "BatchNormalization", "LayerNormalization", "Rescaling", "InputLayer",
    "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
) if hasattr(L, name))


class PrunableLayer(metaclass=abc.ABCMeta):
    """Mixin of a custom layer that says which of its weights to prune.

    Example:

    ```python
    class MyDense(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    layer = tfmot.sparsity.keras.prune_low_magnitude(MyDense(20))
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The weights (variables) to prune."""
        raise NotImplementedError("Must be implemented in subclasses.")


def _custom(layer) -> bool:
    return isinstance(layer, PrunableLayer) or callable(getattr(layer, "get_prunable_weights", None))


def _rnn_supported(layer) -> bool:
    cells = getattr(layer.cell, "cells", [layer.cell])
    return all(isinstance(c, _CELLS) or _custom(c) for c in cells)


def support(layer) -> str:
    """"prune", "keep" (accepted, nothing to prune) or "refuse" for `layer`."""
    if _custom(layer):
        return "prune"
    if type(layer) in _PRUNED:
        if isinstance(layer, L.RNN) and not _rnn_supported(layer):
            return "refuse"
        return "prune"
    if type(layer) in _NOT_PRUNED:
        return "keep"
    return "refuse"


def unsupported_error(layer) -> ValueError:
    return ValueError(
        "Please initialize `Prune` with a supported layer. Layers should either be supported "
        "by the PruneRegistry (built-in keras layers) or should be a `PrunableLayer` instance, "
        "or should has a customer defined `get_prunable_weights` method. You passed: "
        f"{layer.__class__} (tfprune.prune prunes any layer: see docs/migration.md). "
        f"Received: layer={layer.name}")


def _m_by_n(value):
    if value is None:
        return None
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or len(items) != 2:
        raise ValueError(
            "The sparsity_m_by_n argument must be a tuple/list of 2 integers. "
            f"{received('sparsity_m_by_n', value)}")
    for x in items:
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise ValueError(
                "The sparsity_m_by_n argument must be a tuple/list of 2 integers; element "
                f"{x!r} is a {type(x).__name__}. {received('sparsity_m_by_n', value)}")
    m, n = (int(x) for x in items)
    if not 0 < m < n:
        raise ValueError(
            f"Argument m_by_n received {items}, m be must smaller than n (and > 0). "
            f"{received('sparsity_m_by_n', value)}")
    return m, n


def _block(block_size):
    try:
        block = tuple(int(b) for b in block_size)
    except (TypeError, ValueError):
        block = None
    if block is None or len(block) != 2 or min(block) < 1:
        raise ValueError(
            "block_size must be a tuple/list of 2 positive integers. "
            f"{received('block_size', block_size)}")
    return block


def _final_sparsity(schedule) -> float:
    config = schedule.get_config().get("config", {})
    for key in ("final_sparsity", "target_sparsity"):
        if isinstance(config.get(key), numbers.Real):
            return float(config[key])
    return 0.0


@keras.saving.register_keras_serializable("tfprune.compat.tfmot")
class PruneLowMagnitude(PruningWrapper):
    """tfmot's pruning wrapper: a `tfprune.PruningWrapper` with tfmot's
    arguments, name (`prune_low_magnitude_<layer>`) and checks.

    Build it through `prune_low_magnitude`. `UpdatePruningStep` updates its
    masks on the steps `pruning_schedule` gives; `tfprune.strip`,
    `tfprune.export` and `tfprune.sparsity_report` work on it as on any
    tfprune wrapper.

    Args:
        layer: the layer to prune (a registry layer or a `PrunableLayer`).
        pruning_schedule: a `PruningSchedule`. Defaults to
            `ConstantSparsity(0.5, 0)`.
        block_size: `(height, width)` blocks of the 2-D kernel pruned
            together. Defaults to `(1, 1)`.
        block_pooling_type: "AVG" or "MAX": a block's score. Defaults to "AVG".
        sparsity_m_by_n: `(m, n)`: `m` zeros in every `n` consecutive input
            weights of each output, applied once, at the first step.
        **kwargs: base layer arguments (a `name` is replaced, as in tfmot).
    """

    def __init__(self, layer, pruning_schedule=None, block_size=(1, 1),
                 block_pooling_type="AVG", sparsity_m_by_n=None, **kwargs):
        if pruning_schedule is None:
            pruning_schedule = _schedules.ConstantSparsity(0.5, 0)
        pruning_schedule = _schedules.deserialize(pruning_schedule)
        self.sparsity_m_by_n = _m_by_n(sparsity_m_by_n)
        self.block_size = _block(block_size)
        if block_pooling_type not in ("AVG", "MAX"):
            raise ValueError(
                f"Unsupported pooling type '{block_pooling_type}'. Should be 'AVG' or 'MAX'. "
                f"{received('block_pooling_type', block_pooling_type)}")
        self.block_pooling_type = block_pooling_type
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Please initialize `Prune` layer with a `Layer` instance. You passed: "
                f"{layer!r}. {received('layer', layer)}")
        if support(layer) == "refuse":
            raise unsupported_error(layer)
        self.pruning_schedule = pruning_schedule
        if self.sparsity_m_by_n is not None:
            m, n = self.sparsity_m_by_n
            granularity, sparsity = granularity_lib.NM(n - m, n), m / n
        elif self.block_size != (1, 1):
            reduction = "mean" if block_pooling_type == "AVG" else "max"
            granularity = granularity_lib.Block(self.block_size, reduction=reduction)
            sparsity = _final_sparsity(pruning_schedule)
        else:
            granularity, sparsity = "unstructured", _final_sparsity(pruning_schedule)
        kwargs["name"] = f"prune_low_magnitude_{layer.name}"
        for key in ("sparsity", "include", "strategy"):
            kwargs.pop(key, None)
        super().__init__(layer, sparsity, strategy=strategies.Strategy(granularity=granularity),
                         **kwargs)
        if keras_internals.input_shape_arg(self) is None:
            # `Dense(20, input_shape=(20,))` as a Sequential's first layer.
            keras_internals.set_input_shape_arg(self, keras_internals.input_shape_arg(layer))

    def _prunable_weights(self):
        found = super()._prunable_weights()
        names = None if _custom(self.layer) else _PRUNED.get(type(self.layer))
        if names is None:
            return found
        return [pw for pw in found if pw.layer is self.layer and pw.variable.name in names]

    def call(self, inputs, *args, training=None, **kwargs):
        if training is True and not state_lib.is_attached(self):
            raise RuntimeError(
                "Prune() wrapper requires the UpdatePruningStep callback to be provided during "
                "training. Please add it as a callback to your model.fit call. (Layer "
                f"'{self.name}'; in a custom loop, call the callback's on_train_begin and "
                "on_train_batch_begin.)")
        return super().call(inputs, *args, training=training, **kwargs)

    def get_config(self):
        config = keras.layers.Wrapper.get_config(self)
        config.update(
            pruning_schedule=self.pruning_schedule.get_config(),
            block_size=list(self.block_size),
            block_pooling_type=self.block_pooling_type,
            sparsity_m_by_n=None if self.sparsity_m_by_n is None else list(self.sparsity_m_by_n),
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(config.pop("layer"),
                                                      custom_objects=custom_objects)
        schedule = _schedules.deserialize(config.pop("pruning_schedule"), custom_objects)
        return cls(layer, pruning_schedule=schedule, **config)
