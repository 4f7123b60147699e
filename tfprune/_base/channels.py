"""Channel dependencies of a graph model: which channels must go together.

Every channel (position along the last axis) of every tensor of a
Sequential or Functional model belongs to a *class*. A producer (Dense,
Conv, Embedding) creates one class per output unit; layers that act on each
channel on its own (BatchNormalization, elementwise activations, dropout,
pooling, padding, a depthwise convolution with `depth_multiplier=1`) give
their output the classes of their input; merges that combine channel `i` of
several tensors (Add, Subtract, Multiply, Average, Maximum, Minimum,
Concatenate on another axis) join the classes of channel `i` into one; a
Concatenate on the channel axis puts the classes of its inputs one after the
other (the offsets); Flatten and Reshape repeat them once per position.
Removing a channel means removing its whole class: the output units of every
producer in it, the channels of every depthwise convolution and
BatchNormalization it crosses, the input rows of every layer reading it.
This is the dependency-graph idea of Torch-Pruning, with the index mapping
carried by arrays of class ids.

A layer this module does not know (a custom layer, LayerNormalization,
attention, a keras op written in the graph, a nested model) may mix
channels, so the classes it reads are *pinned* (they must stay) and its
outputs get new pinned classes: it never couples channels it cannot reason
about. The model's inputs and outputs are pinned too.

- `ChannelUnion`: union-find over classes, with pins; `tfprune.shrink`
  builds its own constant-aware analysis on it.
- `graph_nodes(model)`: the calls of a graph model in topological order.
- `channel_dependencies(model)`: the structural analysis, used by the
  `Units` strategy to give coupled units one decision
  (`tfprune.strategies._structure.unit_groups`).
"""

from __future__ import annotations

import math

import keras
import numpy as np

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.graph import is_graph_model

__all__ = [
    "ChannelUnion", "ChannelDependencies", "channel_dependencies", "graph_view",
    "graph_nodes", "data_tensors", "last_dim", "is_elementwise", "channels_last",
]


# ------------------------------------------------------------- union-find
class ChannelUnion:
    """Union-find over channel classes; a class is pinned if any member is."""

    def __init__(self):
        self._parent: list[int] = []
        self._pinned: list[bool] = []

    def new(self, n: int, pinned: bool = False) -> np.ndarray:
        """`n` new classes, as an array of their ids."""
        start = len(self._parent)
        self._parent.extend(range(start, start + n))
        self._pinned.extend([pinned] * n)
        return np.arange(start, start + n)

    def find(self, i: int) -> int:
        parent = self._parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a, b) -> None:
        """Joins the classes `a[k]` and `b[k]` for every `k`."""
        for x, y in zip(np.atleast_1d(a), np.atleast_1d(b)):
            rx, ry = self.find(int(x)), self.find(int(y))
            if rx != ry:
                self._parent[ry] = rx
                self._pinned[rx] = self._pinned[rx] or self._pinned[ry]

    def pin(self, ids) -> None:
        """Marks the classes of `ids` as kept (None: nothing)."""
        if ids is None:
            return
        ids = getattr(ids, "ids", ids)
        for i in np.unique(np.asarray(ids, dtype="int64")):
            self._pinned[self.find(int(i))] = True

    def pinned(self, ids) -> np.ndarray:
        """Boolean array: which of `ids` belong to a pinned class."""
        return np.array([self._pinned[self.find(int(i))] for i in ids], dtype=bool)

    def roots(self, ids) -> np.ndarray:
        """The class (root id) of each of `ids`."""
        return np.array([self.find(int(i)) for i in ids], dtype="int64")


# ----------------------------------------------------------- graph helpers
def graph_view(model):
    """The Functional graph of a Sequential or Functional model."""
    return keras_internals.sequential_graph(model)


def last_dim(tensor):
    shape = tensor.shape
    return shape[-1] if len(shape) else None


def data_tensors(node) -> list:
    """The input tensors of a call, without the Keras mask passed as `mask=`."""
    mask = node.arguments.kwargs.get("mask")
    masks = {id(t) for t in keras.tree.flatten(mask)} if mask is not None else set()
    return [t for t in node.input_tensors if id(t) not in masks]


def graph_nodes(model) -> list:
    """The calls (Keras nodes) of a graph model, inputs first, model inputs left out."""
    by_depth = keras_internals.nodes_by_depth(graph_view(model))
    return [
        node
        for depth in sorted(by_depth, reverse=True)
        for node in by_depth[depth]
        if node.operation is not None and not node.is_input
    ]


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


def _layers(*names) -> tuple:
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


IDENTITY = _layers(
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
)
ELEMENTWISE = _layers("Activation", "ReLU", "LeakyReLU", "ELU")
CHANNEL_PRESERVING = _layers(
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "UpSampling1D", "UpSampling2D", "UpSampling3D", "Cropping1D", "Cropping2D", "Cropping3D",
    "RepeatVector",
)
PADDING = _layers("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
MERGES = _layers("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
CONVOLUTIONS = _layers("Conv1D", "Conv2D", "Conv3D")
DEPTHWISE = _layers("DepthwiseConv1D", "DepthwiseConv2D")


def per_channel_depthwise(layer) -> bool:
    """True for a channels-last depthwise convolution with one output per channel."""
    return (
        isinstance(layer, DEPTHWISE)
        and channels_last(layer)
        and getattr(layer, "depth_multiplier", 1) == 1
    )


def produces_units(layer) -> bool:
    """True for the layers whose output units are new classes (their kernel's last axis)."""
    if isinstance(layer, keras.layers.Dense):
        return True
    if isinstance(layer, CONVOLUTIONS):
        return channels_last(layer) and getattr(layer, "groups", 1) == 1
    return isinstance(layer, keras.layers.Embedding)


# ----------------------------------------------------------------- analysis
class ChannelDependencies(ChannelUnion):
    """The channel classes of a graph model and the layers holding them.

    Attributes:
        units: `{id(layer): ids}`, the classes of the output units of each
            producer (Dense, Conv, Embedding; the layer inside a
            TimeDistributed), shared by all its calls.
        channels: `{id(layer): ids}`, the classes of the channels of each
            per-channel depthwise convolution (its kernel's axis -2).
    """

    def __init__(self):
        super().__init__()
        self.units: dict = {}
        self.channels: dict = {}

    def fresh(self, tensor) -> np.ndarray | None:
        """Pinned classes for a tensor whose channels are not followed."""
        n = last_dim(tensor)
        return self.new(n, pinned=True) if isinstance(n, int) and n > 0 else None

    def unit_ids(self, weight):
        """`(axis, ids)`: the classes along the unit axis of a `PrunableWeight`,
        or None when the analysis did not follow its layer."""
        key = id(weight.layer)
        if weight.variable.name in ("kernel", "embeddings") and key in self.units:
            return -1, self.units[key]
        if weight.variable.name == "kernel" and key in self.channels:
            return -2, self.channels[key]
        return None


def _single(node, inputs):
    if len(inputs) != 1 or len(node.outputs) != 1 or inputs[0] is None:
        return None
    return inputs[0]


def _passes(layer, node, x) -> bool:
    """Whether a one-in, one-out layer keeps channel `i` as channel `i`."""
    if x is None or last_dim(node.outputs[0]) != len(x):
        return False
    if isinstance(layer, IDENTITY):
        return True
    if isinstance(layer, keras.layers.Activation):
        return is_elementwise(layer.activation)
    if isinstance(layer, ELEMENTWISE):
        return True
    if isinstance(layer, CHANNEL_PRESERVING + PADDING):
        return channels_last(layer)
    if isinstance(layer, keras.layers.BatchNormalization):
        rank = len(node.input_tensors[0].shape)
        return layer.axis in (-1, rank - 1)
    return False


def _follow(layer, node, inputs, deps: ChannelDependencies):
    """The classes of the outputs of one call, or None if it is not followed."""
    if isinstance(layer, keras.layers.TimeDistributed):
        inner = layer.layer
        if isinstance(inner, keras.layers.Dense) or (
            isinstance(inner, CONVOLUTIONS) and produces_units(inner)
        ):
            return [_produce(inner, node, deps)] if len(node.outputs) == 1 else None
        return None
    if produces_units(layer):
        return [_produce(layer, node, deps)] if len(node.outputs) == 1 else None
    x = _single(node, inputs)
    if per_channel_depthwise(layer) and is_elementwise(layer.activation):
        if x is None or last_dim(node.outputs[0]) != len(x):
            return None
        if id(layer) in deps.channels:
            deps.union(deps.channels[id(layer)], x)
        else:
            deps.channels[id(layer)] = np.array(x)
        return [x]
    if _passes(layer, node, x):
        return [x]
    if isinstance(layer, keras.layers.Flatten) and x is not None and channels_last(layer):
        inner = node.input_tensors[0].shape[1:-1]
        if all(isinstance(d, int) for d in inner):
            times = math.prod(inner)
            if last_dim(node.outputs[0]) == times * len(x):
                return [np.tile(x, times)]
        return None
    if isinstance(layer, keras.layers.Reshape) and x is not None:
        out = last_dim(node.outputs[0])
        if isinstance(out, int) and out % len(x) == 0:
            return [np.tile(x, out // len(x))]
        return None
    if isinstance(layer, MERGES + (keras.layers.Concatenate,)):
        return _merge(layer, node, inputs, deps)
    return None


def _produce(layer, node, deps):
    n = last_dim(node.outputs[0])
    if id(layer) not in deps.units:
        if not isinstance(n, int) or n <= 0:
            return None
        deps.units[id(layer)] = deps.new(n)
    return deps.units[id(layer)]


def _merge(layer, node, inputs, deps):
    if len(node.outputs) != 1 or any(x is None for x in inputs) or not inputs:
        return None
    if isinstance(layer, keras.layers.Concatenate):
        rank = len(node.outputs[0].shape)
        if layer.axis % rank == rank - 1:
            return [np.concatenate(inputs)]
    n = last_dim(node.outputs[0])
    if any(len(x) != n for x in inputs):
        return None
    for x in inputs[1:]:
        deps.union(inputs[0], x)
    return [inputs[0]]


def _analyze(model, deps: ChannelDependencies, seen: set) -> None:
    seen.add(id(model))
    view = graph_view(model)
    classes = {id(x): deps.fresh(x) for x in view.inputs}
    for node in graph_nodes(view):
        layer = walk.unwrap(node.operation)
        inputs = [classes.get(id(t)) for t in data_tensors(node)]
        outputs = None
        if isinstance(layer, keras.layers.Layer):
            outputs = _follow(layer, node, inputs, deps)
        if outputs is not None and any(
            ids is None or len(ids) != last_dim(t) for ids, t in zip(outputs, node.outputs)
        ):
            outputs = None
        if outputs is None:  # not followed: what it reads stays, what it gives is new
            for ids in inputs:
                deps.pin(ids)
            outputs = [deps.fresh(t) for t in node.outputs]
            if is_graph_model(layer) and id(layer) not in seen:
                _analyze(layer, deps, seen)  # on its own: its inputs and outputs stay
        for tensor, ids in zip(node.outputs, outputs):
            classes[id(tensor)] = ids
    for x in view.outputs:
        deps.pin(classes.get(id(x)))


def channel_dependencies(model) -> ChannelDependencies:
    """The channel classes of a Sequential or Functional model (plain or pruned).

    Nested graph models are analysed on their own, their inputs and outputs
    pinned. Pruning wrappers are transparent.

    Args:
        model: a built Sequential or Functional model.

    Returns:
        A `ChannelDependencies`.
    """
    deps = ChannelDependencies()
    _analyze(model, deps, set())
    return deps
