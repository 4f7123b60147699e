"""The channel rules: one registry of how each kind of layer treats channels.

A *channel* is a position along the last axis of a tensor. A `ChannelRule`
says, for one call of a layer, which channels of its outputs are which
channels of its inputs: it passes them (Dropout, activations, pooling),
keeps one parameter per channel (BatchNormalization, a depthwise
convolution), produces new ones (Dense, Conv, Embedding, recurrent layers),
merges them (Add, Multiply, ...), concatenates or repeats them (Concatenate,
Flatten, Reshape), or follows nothing (the base class): then the engine
pins what the call reads and gives its outputs new pinned channels.

Rules are written once, against the small `ChannelFlow` interface, and two
engines run them over a graph model:

- `tfprune._base.channels.channel_dependencies` flows arrays of class ids;
  the `Units` strategy gives the units of one class one decision.
- `tfprune.shrink` (`tfprune/_shrink/`) flows `Channels` (ids and constant
  values); its `Surgery` is a rule extended with the constant values and the
  rebuild of the smaller layer.

The registry is searched with `isinstance`, most recently registered first
(`register_channel_rule`); a layer it does not know gets `UNKNOWN`.
`tfprune._shrink.register_surgery` registers a `Surgery` here, so one
registration teaches unit grouping and `shrink` together.

Example:

>>> import keras
>>> channel_rule_for(keras.layers.Dropout(0.5)) is IDENTITY
True
>>> channel_rule_for(keras.layers.LayerNormalization()) is UNKNOWN
True
"""

from __future__ import annotations

import math
from typing import Callable
from typing import Protocol

import keras

__all__ = [
    "ChannelFlow", "ChannelRule", "Passes", "PerChannel", "Flattens", "Reshapes", "Merges",
    "Concatenates", "Produces", "Embeds", "Distributes", "Recurs", "RecursBothWays",
    "register_channel_rule", "channel_rule_for", "followed_recurrent", "last_dim",
    "channels_last", "is_elementwise", "single",
]


# ------------------------------------------------------------------ helpers
def last_dim(tensor):
    """The size of the last axis of `tensor` (None for a scalar or unknown)."""
    shape = tensor.shape
    return shape[-1] if len(shape) else None


def channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


_ELEMENTWISE = [
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu",
    "hard_swish", "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu",
    "relu6", "selu", "sigmoid", "silu", "soft_shrink", "softplus", "softsign",
    "sparse_plus", "sparse_sigmoid", "squareplus", "swish", "tanh", "tanh_shrink",
]


def is_elementwise(activation) -> bool:
    """True for built-in activations that act on each value on its own."""
    return any(getattr(keras.activations, name, None) is activation for name in _ELEMENTWISE)


def single(node, inputs):
    """The one input of a one-in, one-out call, or None."""
    if len(inputs) != 1 or len(node.outputs) != 1 or inputs[0] is None:
        return None
    return inputs[0]


def _count(n) -> bool:
    return isinstance(n, int) and n > 0


class ChannelFlow(Protocol):
    """What an engine offers the rules; `x` is whatever the engine flows
    for the channels of one tensor (it has `len`)."""

    def union(self, a, b) -> None:
        """Channel `k` of `a` and channel `k` of `b` are one channel."""

    def pin(self, x) -> None:
        """The channels of `x` stay (None: nothing)."""

    def tile(self, x, times: int):
        """The channels of a last axis that repeats `x` `times` times."""

    def concat(self, parts: list):
        """The channels of the concatenation of `parts`."""

    def produce(self, layer, key: str, n: int):
        """The `n` output units of `layer` (the layer whose weights hold them),
        named `key` within the graph operation; the same at every call."""

    def per_channel(self, layer, x):
        """`layer` holds one parameter (or config entry) per channel of `x`,
        so they go together, at every call; returns `x`."""


# -------------------------------------------------------------------- rules
Predicate = Callable[..., bool]  # (layer, node, x) -> whether the rule applies


class ChannelRule:
    """How one kind of layer maps the channels of its inputs to its outputs.

    This base class is the rule for layers tfprune does not know: it follows
    nothing, so the engines pin what the call reads.

    Attributes:
        distributable: whether `TimeDistributed` around such a layer follows
            the same rule (the units of a kernel's last axis). Defaults to False.
    """

    distributable = False

    def follow(self, layer, node, inputs: list, flow: ChannelFlow) -> list | None:
        """The channels of the outputs of one call of `layer`.

        Args:
            layer: the layer (pruning wrappers already removed).
            node: the Keras node of this call (`node.outputs`, shapes).
            inputs: the channels of each data input (the Keras mask left
                out), None for a tensor whose channels are not followed.
            flow: the engine (`ChannelFlow`).

        Returns:
            The channels of each output, or None if this call is not followed.
        """
        return None


class Passes(ChannelRule):
    """One in, one out, channel `i` stays channel `i`.

    Args:
        when: optional `(layer, node, x) -> bool`, whether a call is
            followed (e.g. channels last). Defaults to None: always.
    """

    def __init__(self, when: Predicate | None = None):
        self.when = when

    def applies(self, layer, node, x) -> bool:
        return self.when is None or self.when(layer, node, x)

    def follow(self, layer, node, inputs, flow):
        x = single(node, inputs)
        if x is None or last_dim(node.outputs[0]) != len(x) or not self.applies(layer, node, x):
            return None
        return [x]


class PerChannel(Passes):
    """Passes the channels and holds one parameter per channel."""

    def follow(self, layer, node, inputs, flow):
        out = super().follow(layer, node, inputs, flow)
        return None if out is None else [flow.per_channel(layer, out[0])]


class Flattens(ChannelRule):
    """Flatten, channels last: the channels repeat once per position."""

    def follow(self, layer, node, inputs, flow):
        x = single(node, inputs)
        if x is None or not channels_last(layer):
            return None
        inner = node.input_tensors[0].shape[1:-1]
        if not all(isinstance(d, int) for d in inner):
            return None
        times = math.prod(inner)
        if last_dim(node.outputs[0]) != times * len(x):
            return None
        return [flow.tile(x, times)]


class Reshapes(ChannelRule):
    """Reshape whose last output axis is a whole number of input channel rows."""

    def follow(self, layer, node, inputs, flow):
        x = single(node, inputs)
        out = last_dim(node.outputs[0]) if x is not None else None
        if not _count(out) or out % len(x):
            return None
        return [flow.tile(flow.per_channel(layer, x), out // len(x))]


def _merge(node, inputs, flow):
    n = last_dim(node.outputs[0])
    if any(len(x) != n for x in inputs):
        return None
    for x in inputs[1:]:
        flow.union(inputs[0], x)
    return [inputs[0]]


class Merges(ChannelRule):
    """Add, Subtract, Multiply, ...: channel `i` of every input is one channel."""

    def follow(self, layer, node, inputs, flow):
        if len(node.outputs) != 1 or not inputs or any(x is None for x in inputs):
            return None
        return _merge(node, inputs, flow)


class Concatenates(ChannelRule):
    """Concatenate: along the channels they follow each other, else they merge."""

    def follow(self, layer, node, inputs, flow):
        if len(node.outputs) != 1 or not inputs or any(x is None for x in inputs):
            return None
        rank = len(node.outputs[0].shape)
        if layer.axis % rank == rank - 1:
            return [flow.concat(inputs)]
        return _merge(node, inputs, flow)


class Produces(ChannelRule):
    """Dense, Conv: new units, the last axis of a kernel whose axis -2 reads the input.

    Args:
        when: optional `(layer, node, x) -> bool`, whether a call is
            followed (e.g. no groups). Defaults to None: always.
    """

    distributable = True

    def __init__(self, when: Predicate | None = None):
        self.when = when

    def follow(self, layer, node, inputs, flow):
        x = single(node, inputs)
        kernel = getattr(layer, "kernel", None)
        n = last_dim(node.outputs[0])
        if (
            x is None
            or kernel is None
            or len(kernel.shape) < 2
            or kernel.shape[-2] != len(x)
            or not _count(n)
            or (self.when is not None and not self.when(layer, node, x))
        ):
            return None
        return [flow.produce(layer, "units", n)]


class Embeds(ChannelRule):
    """Embedding: its inputs are indices (they stay), its outputs new units."""

    def follow(self, layer, node, inputs, flow):
        n = last_dim(node.outputs[0])
        if len(node.outputs) != 1 or not _count(n):
            return None
        for x in inputs:
            flow.pin(x)
        return [flow.produce(layer, "units", n)]


class Distributes(ChannelRule):
    """TimeDistributed: the rule of the inner layer, where it is distributable."""

    def follow(self, layer, node, inputs, flow):
        rule = channel_rule_for(layer.layer)
        return rule.follow(layer.layer, node, inputs, flow) if rule.distributable else None


_CELLS = (keras.layers.LSTMCell, keras.layers.GRUCell, keras.layers.SimpleRNNCell)
_RECURRENT = (keras.layers.LSTM, keras.layers.GRU, keras.layers.SimpleRNN)


def followed_recurrent(rnn) -> bool:
    """True for an LSTM, GRU or SimpleRNN with its own cell, not stateful."""
    return isinstance(rnn, _RECURRENT) and not rnn.stateful and type(rnn.cell) in _CELLS


class Recurs(ChannelRule):
    """LSTM, GRU, SimpleRNN: every output (sequence, states) is the hidden units."""

    def follow(self, layer, node, inputs, flow):
        x = inputs[0] if len(inputs) == 1 else None  # an initial state: not followed
        if x is None or not followed_recurrent(layer) or layer.cell.kernel.shape[0] != len(x):
            return None
        return [flow.produce(layer, "units", layer.cell.units)] * len(node.outputs)


class RecursBothWays(ChannelRule):
    """Bidirectional: the units of each direction, merged as `merge_mode` says."""

    def follow(self, layer, node, inputs, flow):
        fwd, bwd = layer.forward_layer, layer.backward_layer
        if (
            layer.return_state
            or len(inputs) != 1
            or inputs[0] is None
            or not (followed_recurrent(fwd) and followed_recurrent(bwd))
            or fwd.cell.units != bwd.cell.units
            or fwd.cell.kernel.shape[0] != len(inputs[0])
        ):
            return None
        f = flow.produce(fwd, "forward/units", fwd.cell.units)
        b = flow.produce(bwd, "backward/units", bwd.cell.units)
        if layer.merge_mode is None:
            return [f, b]
        if layer.merge_mode == "concat":
            return [flow.concat([f, b])]
        flow.union(f, b)  # sum, ave, mul: channel j is both directions' unit j
        return [f]


# ----------------------------------------------------------------- registry
_RULES: list = []  # (layer class, rule), most recently registered first
UNKNOWN = ChannelRule()


def register_channel_rule(layer_class: type, rule: ChannelRule) -> None:
    """Registers `rule` for `layer_class` and its subclasses, before the others.

    The extension point is `tfprune._shrink.register_surgery`, which checks its
    arguments and registers a `Surgery` (a rule that shrink can also rebuild).
    """
    _RULES.insert(0, (layer_class, rule))


def channel_rule_for(layer) -> ChannelRule:
    """The rule registered for `layer`'s class, or `UNKNOWN`."""
    for cls, rule in _RULES:
        if isinstance(layer, cls):
            return rule
    return UNKNOWN


def _elementwise_layer(layer, node, x) -> bool:
    return not isinstance(layer, keras.layers.Activation) or is_elementwise(layer.activation)


def _channels_last(layer, node, x) -> bool:
    return channels_last(layer)


def _channel_axis(layer, node, x) -> bool:
    return layer.axis in (-1, len(node.input_tensors[0].shape) - 1)


def _ungrouped(layer, node, x) -> bool:
    return channels_last(layer) and getattr(layer, "groups", 1) == 1


def _per_channel_depthwise(layer, node, x) -> bool:
    return (
        channels_last(layer)
        and getattr(layer, "depth_multiplier", 1) == 1
        and is_elementwise(layer.activation)
        and layer.kernel.shape[-2] == len(x)
    )


# The built-in rules, one object per kind, so that shrink can key its
# surgeries on them (`tfprune/_shrink`).
IDENTITY = Passes()
ACTIVATION = Passes(_elementwise_layer)
POOLING = Passes(_channels_last)
PADDING = Passes(_channels_last)
BATCH_NORMALIZATION = PerChannel(_channel_axis)
FLATTEN = Flattens()
RESHAPE = Reshapes()
ADD, SUBTRACT, MULTIPLY, AVERAGE, MAXIMUM, MINIMUM = (Merges() for _ in range(6))
CONCATENATE = Concatenates()
DENSE = Produces()
CONV = Produces(_ungrouped)
DEPTHWISE = PerChannel(_per_channel_depthwise)
EMBEDDING = Embeds()
TIME_DISTRIBUTED = Distributes()
RECURRENT = Recurs()
BIDIRECTIONAL = RecursBothWays()

_BUILTIN = [
    (("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
      "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity"), IDENTITY),
    (("Activation", "ReLU", "LeakyReLU", "ELU"), ACTIVATION),
    (("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
      "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
      "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
      "UpSampling1D", "UpSampling2D", "UpSampling3D", "Cropping1D", "Cropping2D", "Cropping3D",
      "RepeatVector"), POOLING),
    (("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"), PADDING),
    (("BatchNormalization",), BATCH_NORMALIZATION),
    (("Flatten",), FLATTEN),
    (("Reshape",), RESHAPE),
    (("Add",), ADD), (("Subtract",), SUBTRACT), (("Multiply",), MULTIPLY),
    (("Average",), AVERAGE), (("Maximum",), MAXIMUM), (("Minimum",), MINIMUM),
    (("Concatenate",), CONCATENATE),
    (("Dense",), DENSE),
    (("Conv1D", "Conv2D", "Conv3D"), CONV),
    (("DepthwiseConv1D", "DepthwiseConv2D"), DEPTHWISE),
    (("Embedding",), EMBEDDING),
    (("TimeDistributed",), TIME_DISTRIBUTED),
    (("LSTM", "GRU", "SimpleRNN"), RECURRENT),
    (("Bidirectional",), BIDIRECTIONAL),
]
for _names, _rule in _BUILTIN:
    _RULES.extend((getattr(keras.layers, n), _rule) for n in _names if hasattr(keras.layers, n))
