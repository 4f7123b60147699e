"""Per-layer surgery: the interface, the registry, and the layers without units.

A `Surgery` says how one kind of layer takes part in shrinking:
- `analyze(layer, node, inputs, graph)` receives the `Channels` of the
  layer's inputs at one call (`node`), records in `graph` what the layer
  consumes and produces, and returns the `Channels` of its outputs. It
  returns None when it cannot follow this call; the layer is then treated as
  unknown: all its inputs and units are kept.
- `rebuild(layer, plan)` returns a `Rebuilt` layer with fewer units or rows,
  or None when the layer is copied unchanged.

The registry is searched with `isinstance`, most recently registered first
(`register_surgery`); a layer it does not know is kept as it is.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np

from tfprune._base import channels as _channels
from tfprune._base import walk
from tfprune._base.channels import channels_last
from tfprune._base.channels import is_elementwise
from tfprune._base.channels import last_dim
from tfprune._shrink._graph import Channels
from tfprune._shrink._graph import UnitGraph

_SURGERIES: list = []


@dataclasses.dataclass
class Rebuilt:
    """A replacement layer and the values of its variables.

    Attributes:
        layer: the new, unbuilt layer (built when the model is re-wired).
        arrays: `{path relative to the layer: array}` for each variable of
            the new layer, or None if the layer already holds its weights.
    """

    layer: keras.layers.Layer
    arrays: dict | None


class Surgery:
    """How one kind of layer takes part in shrinking.

    This base class is the behaviour for layers shrink does not know: the
    call is not followed (everything the layer touches is kept) and the layer
    is copied unchanged.
    """

    def analyze(self, layer, node, inputs: list, graph: UnitGraph):
        """Follows the channels through one call of `layer`.

        Args:
            layer: the layer of the model graph.
            node: the Keras node of this call (`node.outputs`, shapes).
            inputs: the `Channels` of each data input (the Keras mask left
                out), None for a tensor whose channels are not followed.
            graph: the `UnitGraph`; record reads with `graph.consume` and
                output units with `graph.layer_units`.

        Returns:
            One `Channels` (or None) per output tensor, or None if this call
            cannot be followed.
        """
        return None

    def rebuild(self, layer, plan) -> Rebuilt | None:
        """The smaller layer decided by `plan` (a `LayerPlan`), or None to copy it."""
        return None


def register_surgery(layer_class: type, surgery: Surgery) -> None:
    """Registers `surgery` for `layer_class` and its subclasses.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        surgery: a `Surgery` instance; it takes precedence over the ones
            registered before it.

    Raises:
        TypeError: if an argument has the wrong type.
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "`layer_class` must be a subclass of `keras.layers.Layer`. "
            f"Received: layer_class={layer_class!r}"
        )
    if not isinstance(surgery, Surgery):
        raise TypeError(f"`surgery` must be a `Surgery` instance. Received: surgery={surgery!r}")
    _SURGERIES.insert(0, (layer_class, surgery))


def surgery_for(layer) -> Surgery:
    for cls, surgery in _SURGERIES:
        if isinstance(layer, cls):
            return surgery
    return _UNKNOWN


_UNKNOWN = Surgery()


# ------------------------------------------------------------------ helpers
def to_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def weight_keys(layer) -> dict:
    """`{id(variable): key}`: names of the sub-layers below `layer`, then the variable's.

    The keys (e.g. "forward_lstm/lstm_cell/kernel") depend only on the layer
    structure and names, so a rebuilt layer has the same keys as the old one.
    """
    keys = {}
    for _, path, sub in walk.walk(layer):
        prefix = path.split("/", 1)[1] + "/" if "/" in path else ""
        for variable in walk.own_weights(sub):
            keys.setdefault(id(variable), prefix + variable.name)
    return keys


def rel_path(variable, layer) -> str:
    """Key of `variable` below `layer` (see `weight_keys`)."""
    return weight_keys(layer).get(id(variable), variable.name)


def sibling(path: str, name: str) -> str:
    """`path` with its last component replaced by `name`."""
    head = path.rsplit("/", 1)
    return name if len(head) == 1 else f"{head[0]}/{name}"


def apply_elementwise(fn, vals: np.ndarray, dtype="float32") -> np.ndarray:
    """`fn` applied to the known values of `vals` (NaN stays NaN), computed in `dtype`."""
    known = ~np.isnan(vals)
    x = np.where(known, vals, 0.0).astype(dtype)[None]
    out = to_numpy(fn(keras.ops.convert_to_tensor(x))).astype("float64")[0]
    return np.where(known, out, np.nan)


def compute_dtype(layer) -> str:
    dtype = getattr(layer, "compute_dtype", "float32") or "float32"
    return dtype if dtype in ("float32", "float64") else "float32"


def single(node, inputs):
    """The one input `Channels` of a one-in, one-out call, or None."""
    if len(inputs) != 1 or len(node.outputs) != 1 or inputs[0] is None:
        return None
    return inputs[0]


# ------------------------------------------------- layers without weights
class Identity(Surgery):
    """Layers that are the identity at inference (Dropout, noise, ...)."""

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        return None if x is None else [x]


class Elementwise(Surgery):
    """Activation layers: each channel keeps its class, constants go through."""

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        if x is None:
            return None
        if isinstance(layer, keras.layers.Activation):
            if not is_elementwise(layer.activation):
                return None
            fn = layer.activation
        else:
            fn = layer.call
        return [x.with_vals(apply_elementwise(fn, x.vals, compute_dtype(layer)))]


class ChannelPreserving(Surgery):
    """Pooling, up-sampling, cropping, padding, RepeatVector.

    Every output position copies or averages the same channel of the input,
    so constants stay constant, except where padding brings in zeros: there
    only zero channels stay constant.
    """

    def __init__(self, pads: bool = False):
        self.pads = pads

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        if x is None or not channels_last(layer) or last_dim(node.outputs[0]) != len(x):
            return None
        pads = self.pads or getattr(layer, "padding", "valid") != "valid"
        vals = np.where(x.vals == 0, 0.0, np.nan) if pads else x.vals
        return [x.with_vals(vals)]


class Flatten(Surgery):
    """Flatten: the channels repeat once per position, in C order."""

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        if x is None or not channels_last(layer):
            return None
        inner = node.input_tensors[0].shape[1:-1]
        if not all(isinstance(d, int) for d in inner):
            return None
        times = math.prod(inner)
        if last_dim(node.outputs[0]) != times * len(x):
            return None
        return [x.tile(times)]


class Reshape(Surgery):
    """Reshape whose last output axis is a whole number of input channel rows."""

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        out = last_dim(node.outputs[0]) if x is not None else None
        if not isinstance(out, int) or out % len(x):
            return None
        graph.consume("channels", x, need_const=False)
        return [x.tile(out // len(x))]

    def rebuild(self, layer, plan):
        rows = plan.rows("channels")
        target = list(layer.target_shape)
        if rows is None or rows[0].all() or target[-1] == -1:
            return None
        keep = rows[0]
        target[-1] = target[-1] // len(keep) * int(keep.sum())
        config = layer.get_config()
        config["target_shape"] = tuple(target)
        return Rebuilt(type(layer).from_config(config), {})


class BatchNormalization(Surgery):
    """Per-channel affine map at inference; its parameters follow the channels."""

    def analyze(self, layer, node, inputs, graph):
        x = single(node, inputs)
        if x is None:
            return None
        rank = len(node.input_tensors[0].shape)
        if layer.axis not in (-1, rank - 1):
            return None
        graph.consume("channels", x, need_const=False)
        mean = to_numpy(layer.moving_mean).astype("float64")
        var = to_numpy(layer.moving_variance).astype("float64")
        gamma = to_numpy(layer.gamma).astype("float64") if layer.scale else 1.0
        beta = to_numpy(layer.beta).astype("float64") if layer.center else 0.0
        vals = (x.vals - mean) / np.sqrt(var + layer.epsilon) * gamma + beta
        return [x.with_vals(vals)]

    def rebuild(self, layer, plan):
        rows = plan.rows("channels")
        if rows is None or rows[0].all():
            return None
        keep = rows[0]
        arrays = {rel_path(v, layer): to_numpy(v)[keep] for v in layer.weights}
        return Rebuilt(type(layer).from_config(layer.get_config()), arrays)


class Merge(Surgery):
    """Add, Subtract, Multiply, Average, Maximum, Minimum: channel i of all inputs."""

    def __init__(self, op):
        self.op = op

    def analyze(self, layer, node, inputs, graph):
        n = last_dim(node.outputs[0])
        if any(x is None or len(x) != n for x in inputs):
            return None
        for x in inputs[1:]:
            graph.union(inputs[0].ids, x.ids)
        return [inputs[0].with_vals(self.op(np.stack([x.vals for x in inputs])))]


class Concatenate(Surgery):
    """Concatenate: along the channels the indices shift, elsewhere they merge."""

    def analyze(self, layer, node, inputs, graph):
        if any(x is None for x in inputs) or len(node.outputs) != 1:
            return None
        rank = len(node.outputs[0].shape)
        if layer.axis % rank == rank - 1:
            return [Channels(np.concatenate([x.ids for x in inputs]),
                             np.concatenate([x.vals for x in inputs]))]
        if any(len(x) != len(inputs[0]) for x in inputs):
            return None
        for x in inputs[1:]:
            graph.union(inputs[0].ids, x.ids)
        vals = np.stack([x.vals for x in inputs])
        same = np.all(vals == vals[0], axis=0)
        return [inputs[0].with_vals(np.where(same, vals[0], np.nan))]


def _layers(*names):
    return tuple(getattr(keras.layers, n) for n in names if hasattr(keras.layers, n))


for _classes, _surgery in [
    (_channels.IDENTITY, Identity()),
    (_channels.ELEMENTWISE, Elementwise()),
    (_channels.CHANNEL_PRESERVING, ChannelPreserving()),
    (_channels.PADDING, ChannelPreserving(pads=True)),
    (_layers("Flatten"), Flatten()),
    (_layers("Reshape"), Reshape()),
    (_layers("BatchNormalization"), BatchNormalization()),
    (_layers("Add"), Merge(lambda v: np.sum(v, axis=0))),
    (_layers("Subtract"), Merge(lambda v: v[0] - v[1])),
    (_layers("Multiply"), Merge(lambda v: np.prod(v, axis=0))),
    (_layers("Average"), Merge(lambda v: np.mean(v, axis=0))),
    (_layers("Maximum"), Merge(lambda v: np.max(v, axis=0))),
    (_layers("Minimum"), Merge(lambda v: np.min(v, axis=0))),
    (_layers("Concatenate"), Concatenate()),
]:
    for _cls in _classes:
        _SURGERIES.append((_cls, _surgery))
