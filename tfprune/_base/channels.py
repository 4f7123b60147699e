"""Channel dependencies of a graph model: which channels must go together.

Every channel (position along the last axis) of every tensor of a
Sequential or Functional model belongs to a *class*. How a layer maps the
classes of its inputs to those of its outputs is its channel rule
(`tfprune._base.channel_rules`, the one registry that `tfprune.shrink`
reads too): a producer (Dense, Conv, Embedding, a recurrent layer) creates
one class per output unit; layers that act on each channel on its own
(BatchNormalization, elementwise activations, dropout, pooling, padding, a
depthwise convolution with `depth_multiplier=1`) give their output the
classes of their input; merges that combine channel `i` of several tensors
(Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate on another
axis) join the classes of channel `i` into one; a Concatenate on the
channel axis puts the classes of its inputs one after the other (the
offsets); Flatten and Reshape repeat them once per position. Removing a
channel means removing its whole class: the output units of every producer
in it, the channels of every depthwise convolution and BatchNormalization
it crosses, the input rows of every layer reading it. This is the
dependency-graph idea of Torch-Pruning, with the index mapping carried by
arrays of class ids.

A layer without a rule (a custom layer, LayerNormalization, attention, a
keras op written in the graph, a nested model) may mix channels, so the
classes it reads are *pinned* (they must stay) and its outputs get new
pinned classes: it never couples channels it cannot reason about. The
model's inputs and outputs are pinned too.

- `ChannelUnion`: union-find over classes, with pins; `tfprune.shrink`
  builds its own constant-aware analysis on it.
- `graph_nodes(model)`: the calls of a graph model in topological order.
- `channel_dependencies(model)`: the structural analysis, used by the
  `Units` strategy to give coupled units one decision
  (`tfprune.strategies._structure.unit_groups`).
"""

from __future__ import annotations

import keras
import numpy as np

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.channel_rules import channel_rule_for
from tfprune._base.channel_rules import last_dim
from tfprune._base.graph import is_graph_model

__all__ = [
    "ChannelUnion", "ChannelDependencies", "channel_dependencies", "graph_view",
    "graph_nodes", "data_tensors",
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
        """Joins the classes `a[k]` and `b[k]` for every `k` (ids, or objects with `.ids`)."""
        a, b = getattr(a, "ids", a), getattr(b, "ids", b)
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


# ----------------------------------------------------------------- analysis
class ChannelDependencies(ChannelUnion):
    """The channel classes of a graph model and the layers holding them.

    It is the `ChannelFlow` the channel rules run on, flowing arrays of
    class ids.

    Attributes:
        units: `{id(layer): ids}`, the classes of the output units of each
            producer (Dense, Conv, Embedding, a recurrent layer or each
            direction of a Bidirectional; the layer inside a
            TimeDistributed), shared by all its calls.
        channels: `{id(layer): ids}`, the classes of the channels of each
            layer with one parameter per channel (a per-channel depthwise
            convolution, along its kernel's axis -2; BatchNormalization;
            Reshape), shared by all its calls.
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
        key, shape = id(weight.layer), tuple(weight.variable.shape)
        if weight.variable.name in ("kernel", "embeddings") and key in self.units:
            ids = self.units[key]
            return (-1, ids) if shape and shape[-1] == len(ids) else None
        if weight.variable.name == "kernel" and key in self.channels:
            ids = self.channels[key]
            return (-2, ids) if len(shape) >= 2 and shape[-2] == len(ids) else None
        return None

    # ------------------------------------------ the `ChannelFlow` of the rules
    def tile(self, x, times: int) -> np.ndarray:
        return np.tile(x, times)

    def concat(self, parts: list) -> np.ndarray:
        return np.concatenate(parts)

    def produce(self, layer, key: str, n: int) -> np.ndarray:
        """The classes of the units of `layer`, made at its first call."""
        if id(layer) not in self.units:
            self.units[id(layer)] = self.new(n)
        return self.units[id(layer)]

    def per_channel(self, layer, x) -> np.ndarray:
        """Joins `x` with the channels `layer` held at its other calls."""
        if id(layer) in self.channels:
            self.union(self.channels[id(layer)], x)
        else:
            self.channels[id(layer)] = np.array(x)
        return x


def _analyze(model, deps: ChannelDependencies, seen: set) -> None:
    seen.add(id(model))
    view = graph_view(model)
    classes = {id(x): deps.fresh(x) for x in view.inputs}
    for node in graph_nodes(view):
        layer = walk.unwrap(node.operation)
        inputs = [classes.get(id(t)) for t in data_tensors(node)]
        outputs = None
        if isinstance(layer, keras.layers.Layer):
            outputs = channel_rule_for(layer).follow(layer, node, inputs, deps)
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
