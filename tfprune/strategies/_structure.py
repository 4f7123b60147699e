"""Model structure for structured pruning: unit groups and I/O layers.

Which tensors of a model share units (the math of units is
`tfprune._masks.units`):

- `unit_groups(weights, layer)`: the groups of a list of `PrunableWeight`s.
  In a Sequential or Functional model, the channels that can only be
  removed together (`tfprune._base.channels`) share one decision: the
  producers feeding an Add, Subtract, Multiply (a squeeze-excitation gate),
  Average, Maximum or Minimum, through BatchNormalization, activations and
  pooling, and the per-channel depthwise convolutions reading them form one
  group, unit `j` of every tensor being the same channel. Tensors whose
  coupled channels do not line up one to one (a Concatenate feeding an Add)
  keep a group each;
- `recurrent_biases(weights)`: the cell biases masked with their units;
- `io_layers(model)`: the prunable layers nearest the model's inputs and
  outputs (protected by "regression"; output units are never removed).
"""

from __future__ import annotations

import dataclasses

import keras

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.channels import ChannelUnion
from tfprune._base.channels import channel_dependencies
from tfprune._base.graph import is_graph_model
from tfprune._base.graph import is_graph_subclass
from tfprune._masks.units import UnitGroup
from tfprune._masks.units import UnitSlice

__all__ = ["unit_groups", "recurrent_biases", "io_layers"]


# ------------------------------------------------------------ unit groups
def _unit_axis(layer) -> int:
    """-2 where the units are the second-to-last axis, else -1."""
    names = ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
             "DepthwiseConv1D", "DepthwiseConv2D")
    second_last = tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))
    return -2 if isinstance(layer, second_last) else -1


_HEAD_AXES = (("query_dense", 1), ("key_dense", 1), ("value_dense", 1), ("output_dense", 0))
_CELL_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def _is_cell(layer) -> bool:
    return hasattr(layer, "recurrent_kernel")


def recurrent_biases(pruned_weights) -> list:
    """`PrunableWeight`s for the biases of the recurrent cells whose kernel is
    in `pruned_weights`: `Units` masks a removed unit's bias entries too, so
    that its state stays exactly zero and `tfprune.shrink` can remove it."""
    out, seen = [], set()
    for pw in pruned_weights:
        cell = pw.layer
        bias = getattr(cell, "bias", None) if _is_cell(cell) else None
        if pw.variable.name == "kernel" and bias is not None and id(cell) not in seen:
            seen.add(id(cell))
            out.append(dataclasses.replace(pw, variable=bias))
    return out


def unit_groups(pruned_weights, layer=None) -> list:
    """Unit groups of a list of `PrunableWeight`s, for `Units` granularity.

    An attention head spans the query, key, value (axis 1) and output
    (axis 0) kernels of a MultiHeadAttention; a recurrent unit spans all
    gates of a cell's kernel and recurrent kernel (last axis) and its row
    of the recurrent kernel, and its bias entries if the cell's bias is in
    `pruned_weights` (see `recurrent_biases`; masked, not scored);
    transposed and depthwise convolutions use axis -2; everything else its
    last axis. In a Sequential or Functional `layer`, tensors whose units
    are the same channels (the convolutions feeding one residual `Add`, a
    squeeze-excitation `Multiply`, a depthwise convolution and the layer
    feeding it; see `tfprune._base.channels`) form one group, so that their
    coupled units get one decision.

    Args:
        pruned_weights: `PrunableWeight`s, e.g. `wrapper.pruned_weights`.
        layer: optional layer or model holding them, searched for
            MultiHeadAttention layers.

    Returns:
        `UnitGroup`s indexing into `pruned_weights`, one per tensor or set
        of tensors that share units, in tensor order.
    """
    index = {id(pw.variable): i for i, pw in enumerate(pruned_weights)}
    groups, claimed = [], set()
    for _, path, sub in [] if layer is None else walk.walk(layer):
        if isinstance(sub, keras.layers.MultiHeadAttention):
            slices = []
            for attr, axis in _HEAD_AXES:
                kernel = getattr(getattr(sub, attr, None), "kernel", None)
                if kernel is not None and id(kernel) in index:
                    slices.append(UnitSlice(index[id(kernel)], axis, 1))
            if slices:
                groups.append(UnitGroup(path, tuple(slices)))
                claimed.update(s.tensor for s in slices)
    cells = {}
    for i, pw in enumerate(pruned_weights):
        if i not in claimed and _is_cell(pw.layer) and pw.variable.name in _CELL_WEIGHTS:
            cells.setdefault(id(pw.layer), []).append(i)
    for members in cells.values():
        slices = [
            UnitSlice(i, -1, pruned_weights[i].gates, pruned_weights[i].variable.name != "bias")
            for i in members
        ]
        rows = [i for i in members if pruned_weights[i].variable.name == "recurrent_kernel"]
        slices += [UnitSlice(i, 0, 1) for i in rows]
        groups.append(UnitGroup(pruned_weights[members[0]].path, tuple(slices)))
        claimed.update(members)
    rest = [i for i in range(len(pruned_weights)) if i not in claimed]
    groups += _channel_groups(pruned_weights, rest, layer)
    return sorted(groups, key=lambda g: min(g.tensors))


def _channel_classes(pruned_weights, indices, layer) -> dict:
    """`{tensor: (axis, classes)}`: the channel class of each unit of the
    tensors `indices` that the channel analysis of `layer` follows."""
    if layer is None or not (is_graph_model(layer) or is_graph_subclass(layer)):
        return {}
    deps = channel_dependencies(layer)
    found = {}
    for i in indices:
        axis_ids = deps.unit_ids(pruned_weights[i]) if pruned_weights[i].gates == 1 else None
        if axis_ids is not None:
            found[i] = (axis_ids[0], tuple(int(c) for c in deps.roots(axis_ids[1])))
    return found


def _channel_groups(pruned_weights, indices, layer) -> list:
    """One group per set of tensors whose units are the same channels, one
    group per tensor where the channels are not coupled or do not line up."""
    found = _channel_classes(pruned_weights, indices, layer)
    links, first = ChannelUnion(), {}  # tensors sharing a class are coupled
    links.new(len(pruned_weights))
    for i, (_, classes) in found.items():
        for c in classes:
            links.union(first.setdefault(c, i), i)
    components = {}
    for i in found:
        components.setdefault(links.find(i), []).append(i)
    groups, coupled = [], set()
    for members in components.values():
        classes = {found[i][1] for i in members}
        (units,) = classes if len(classes) == 1 else (None,)
        if len(members) > 1 and units is not None and len(set(units)) == len(units):
            slices = tuple(UnitSlice(i, found[i][0], 1) for i in sorted(members))
            groups.append(UnitGroup(pruned_weights[min(members)].name, slices))
            coupled.update(members)
    for i in indices:
        if i not in coupled:
            pw = pruned_weights[i]
            groups.append(UnitGroup(pw.name, (UnitSlice(i, _unit_axis(pw.layer), pw.gates),)))
    return groups


# ------------------------------------------------------ model inputs/outputs
def _name(layer) -> str:
    return walk.unwrap(layer).name


def io_layers(model) -> tuple:
    """Names of the top-level prunable layers nearest the inputs and outputs.

    In a Sequential or Functional model these are the prunable layers
    reached from a model input (or leading to an output) without crossing
    another prunable layer: all of them when there are several inputs or
    outputs. In a subclassed model, the first and last prunable sub-layers.

    Returns:
        `(input_layer_names, output_layer_names)`, two sets.
    """
    cache = {}

    def prunable(op):
        # Graphs also hold bare operations (e.g. the `NotEqual` that an
        # Embedding with `mask_zero=True` adds); they own no weights.
        if id(op) not in cache:
            cache[id(op)] = isinstance(op, keras.layers.Layer) and bool(
                walk.prunable_weights(op)
            )
        return cache[id(op)]

    outputs = getattr(model, "outputs", None) or []
    if not outputs or not all(keras_internals.keras_history(t) for t in outputs):
        order = [c for c in walk.children(model) if prunable(c)]
        return ({_name(order[0])}, {_name(order[-1])}) if order else (set(), set())

    def back(tensors, stop_at_prunable, found, seen):
        """Walks back from `tensors`; collects the prunable ops met (and stops
        there if asked); returns True if a model input is reached."""
        reached = False
        for t in tensors:
            op, node_index, _ = keras_internals.keras_history(t)
            if isinstance(op, keras.layers.InputLayer) or not keras_internals.inbound_nodes(op):
                reached = True
                continue
            if prunable(op):
                found.append((op, node_index))
                if stop_at_prunable:
                    continue
            if (id(op), node_index) not in seen:
                seen.add((id(op), node_index))
                node = keras_internals.inbound_nodes(op)[node_index]
                reached |= back(node.input_tensors, stop_at_prunable, found, seen)
        return reached

    last, every = [], []
    back(outputs, True, last, set())
    back(outputs, False, every, set())
    ins = {
        _name(op) for op, i in every
        if back(keras_internals.inbound_nodes(op)[i].input_tensors, True, [], set())
    }
    return ins, {_name(op) for op, _ in last}
