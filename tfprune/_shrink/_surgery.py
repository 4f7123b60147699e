"""Per-layer surgery: shrink's half of the channel rules, and the layers without units.

How a layer maps channels is its channel rule (`tfprune._base.channel_rules`,
the one registry that `Units` unit grouping reads too). A `Surgery` is a
rule extended with what only shrink needs:

- `values(layer, node, inputs, outputs, graph)` receives the `Channels` of
  the layer's inputs at one call (`node`) and those of its outputs as the
  rule gave them, records in `graph` what the layer reads, and returns the
  outputs with their constant values (None: the call is treated as
  unknown, all its inputs and units are kept). `analyze` runs the rule, then
  `values`.
- `rebuild(layer, plan)` returns a `Rebuilt` layer with fewer units or rows,
  or None when the layer is copied unchanged.

`register_surgery(layer_class, surgery)` registers the surgery in the rule
registry, so that one registration teaches unit grouping and `shrink`. The
built-in layers have plain rules there; shrink keys its surgeries for them on
those rules (`extend`). A layer with neither is kept as it is.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfprune._base import channel_rules
from tfprune._base import walk
from tfprune._base.channel_rules import ChannelRule
from tfprune._base.channel_rules import channel_rule_for
from tfprune._shrink._graph import UnitGraph

_BUILTIN: dict = {}  # built-in rule -> its surgery


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


class Surgery(ChannelRule):
    """How one kind of layer takes part in shrinking: a channel rule, extended.

    This base class is the behaviour for layers shrink does not know: its
    rule follows nothing (everything the layer touches is kept) and the
    layer is copied unchanged.

    Args:
        rule: the `ChannelRule` it extends (how the layer maps channels),
            also followed by `Units` unit grouping. Defaults to the built-in
            rule of the surgery's kind (`UNKNOWN` for this base class).
    """

    rule: ChannelRule = channel_rules.UNKNOWN

    def __init__(self, rule: ChannelRule | None = None):
        if rule is not None:
            self.rule = rule

    @property
    def distributable(self) -> bool:
        return self.rule.distributable

    def follow(self, layer, node, inputs, flow):
        return self.rule.follow(layer, node, inputs, flow)

    def analyze(self, layer, node, inputs: list, graph: UnitGraph):
        """Follows the channels through one call of `layer`.

        Args:
            layer: the layer of the model graph.
            node: the Keras node of this call (`node.outputs`, shapes).
            inputs: the `Channels` of each data input (the Keras mask left
                out), None for a tensor whose channels are not followed.
            graph: the `UnitGraph`.

        Returns:
            One `Channels` (or None) per output tensor, or None if this call
            cannot be followed.
        """
        outputs = self.follow(layer, node, inputs, graph)
        return None if outputs is None else self.values(layer, node, inputs, outputs, graph)

    def values(self, layer, node, inputs: list, outputs: list, graph: UnitGraph):
        """The outputs with their constant values; records what the layer reads.

        Args:
            layer, node, inputs, graph: as for `analyze`.
            outputs: the `Channels` of each output as the rule gave them:
                passed, tiled or concatenated channels carry the values of
                the inputs, units (`graph.produce`) unknown values (NaN).
                Record reads with `graph.consume` and set the values of
                units with `graph.layer_units`.

        Returns:
            One `Channels` (or None) per output tensor, or None to treat
            this call as unknown. This base class returns `outputs`.
        """
        return outputs

    def rebuild(self, layer, plan) -> Rebuilt | None:
        """The smaller layer decided by `plan` (a `LayerPlan`), or None to copy it."""
        return None


def register_surgery(layer_class: type, surgery: Surgery) -> None:
    """Teaches unit grouping and `shrink` a layer class and its subclasses.

    The surgery goes into the one registry of channel rules
    (`tfprune._base.channel_rules`): the `Units` strategy couples the
    channels its rule follows, `tfprune.shrink` removes units through the
    layer and rebuilds it with the surgery.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        surgery: a `Surgery` instance; it takes precedence over the ones
            registered before it.

    Raises:
        TypeError: if an argument has the wrong type.

    Example:

    ```python
    from tfprune._shrink import register_surgery
    from tfprune._shrink._surgery import Identity

    class Probe(keras.layers.Layer):  # the identity, e.g. to log activations
        def call(self, x):
            return x

    register_surgery(Probe, Identity())  # channel j of its output is channel j of its input
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "`layer_class` must be a subclass of `keras.layers.Layer`. "
            f"Received: layer_class={layer_class!r}"
        )
    if not isinstance(surgery, Surgery):
        raise TypeError(f"`surgery` must be a `Surgery` instance. Received: surgery={surgery!r}")
    channel_rules.register_channel_rule(layer_class, surgery)


def extend(surgery: Surgery) -> None:
    """Makes `surgery` shrink's half of the built-in rule `surgery.rule`."""
    _BUILTIN[surgery.rule] = surgery


def surgery_for(layer) -> Surgery:
    """The surgery registered for `layer`, or the one of its built-in rule."""
    entry = channel_rule_for(layer)
    if isinstance(entry, Surgery):
        return entry
    return _BUILTIN.get(entry, _UNKNOWN)


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


# ------------------------------------------------- layers without weights
class Identity(Surgery):
    """Layers that are the identity at inference (Dropout, noise, ...)."""

    rule = channel_rules.IDENTITY


class Elementwise(Surgery):
    """Activation layers: each channel keeps its class, constants go through."""

    rule = channel_rules.ACTIVATION

    def values(self, layer, node, inputs, outputs, graph):
        fn = layer.activation if isinstance(layer, keras.layers.Activation) else layer.call
        (x,) = outputs
        return [x.with_vals(apply_elementwise(fn, x.vals, compute_dtype(layer)))]


class ChannelPreserving(Surgery):
    """Pooling, up-sampling, cropping, padding, RepeatVector.

    Every output position copies or averages the same channel of the input,
    so constants stay constant, except where padding brings in zeros: there
    only zero channels stay constant.
    """

    def __init__(self, pads: bool = False, rule: ChannelRule | None = None):
        if rule is None:
            rule = channel_rules.PADDING if pads else channel_rules.POOLING
        super().__init__(rule)
        self.pads = pads

    def values(self, layer, node, inputs, outputs, graph):
        (x,) = outputs
        pads = self.pads or getattr(layer, "padding", "valid") != "valid"
        return [x.with_vals(np.where(x.vals == 0, 0.0, np.nan) if pads else x.vals)]


class Flatten(Surgery):
    """Flatten: the channels repeat once per position, in C order."""

    rule = channel_rules.FLATTEN


class Reshape(Surgery):
    """Reshape whose last output axis is a whole number of input channel rows."""

    rule = channel_rules.RESHAPE

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

    rule = channel_rules.BATCH_NORMALIZATION

    def values(self, layer, node, inputs, outputs, graph):
        (x,) = outputs
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
    """Add, Subtract, Multiply, Average, Maximum, Minimum: channel i of all inputs.

    Args:
        op: the numpy function of the stacked input values.
        rule: the rule it extends. Defaults to the rule of Add.
    """

    rule = channel_rules.ADD

    def __init__(self, op, rule: ChannelRule | None = None):
        super().__init__(rule)
        self.op = op

    def values(self, layer, node, inputs, outputs, graph):
        return [outputs[0].with_vals(self.op(np.stack([x.vals for x in inputs])))]


class Concatenate(Surgery):
    """Concatenate: along the channels the indices shift, elsewhere they merge."""

    rule = channel_rules.CONCATENATE

    def values(self, layer, node, inputs, outputs, graph):
        rank = len(node.outputs[0].shape)
        if layer.axis % rank == rank - 1:
            return outputs  # the concatenation carries the values
        vals = np.stack([x.vals for x in inputs])
        same = np.all(vals == vals[0], axis=0)
        return [outputs[0].with_vals(np.where(same, vals[0], np.nan))]


for _surgery in [
    Identity(),
    Elementwise(),
    ChannelPreserving(),
    ChannelPreserving(pads=True),
    Flatten(),
    Reshape(),
    BatchNormalization(),
    Merge(lambda v: np.sum(v, axis=0), channel_rules.ADD),
    Merge(lambda v: v[0] - v[1], channel_rules.SUBTRACT),
    Merge(lambda v: np.prod(v, axis=0), channel_rules.MULTIPLY),
    Merge(lambda v: np.mean(v, axis=0), channel_rules.AVERAGE),
    Merge(lambda v: np.max(v, axis=0), channel_rules.MAXIMUM),
    Merge(lambda v: np.min(v, axis=0), channel_rules.MINIMUM),
    Concatenate(),
]:
    extend(_surgery)
