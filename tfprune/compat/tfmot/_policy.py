"""tfmot's pruning policies: which layers of a model to prune.

`PruneForLatencyOnXNNPack` keeps tfmot 0.8.1's rules: only 1x1 `Conv2D`
layers are pruned, and the model must be the shape XNNPACK's sparse
inference runs: from each input a `ZeroPadding2D(1)` and a 3x3, stride-2,
'valid' `Conv2D` over 3 channels, then only layers XNNPACK's sparse path
supports, up to a `GlobalAveragePooling2D` on every output branch. Its
errors name the layer that breaks a rule and the rule.
"""

from __future__ import annotations

import abc

import keras

from tfprune._base import keras_internals
from tfprune._base import graph
from tfprune._base.validation import received

__all__ = ["PruneForLatencyOnXNNPack", "PruningPolicy"]

L = keras.layers


class PruningPolicy(abc.ABC):
    """Decides which layers of a model `prune_low_magnitude` wraps.

    Example:

    ```python
    class DenseOnly(tfmot.sparsity.keras.PruningPolicy):
        def allow_pruning(self, layer):
            return isinstance(layer, keras.layers.Dense)

        def ensure_model_supports_pruning(self, model):
            pass
    ```
    """

    @abc.abstractmethod
    def allow_pruning(self, layer):
        """True if `layer` may be wrapped."""
        raise NotImplementedError

    @abc.abstractmethod
    def ensure_model_supports_pruning(self, model):
        """Raises a `ValueError` if `model` cannot be pruned by this policy."""
        raise NotImplementedError


def _nodes(model):
    """`{id(op): (op, producers, consumers)}` of the graph of `model`,
    walked back from its outputs (operations in the graph only)."""
    found = {}

    def visit(tensor):
        op, node_index, _ = keras_internals.keras_history(tensor)
        if id(op) in found:
            return op
        found[id(op)] = (op, [], [])
        node = keras_internals.inbound_nodes(op)[node_index]
        for source in node.input_tensors:
            producer = visit(source)
            if producer not in found[id(op)][1]:
                found[id(op)][1].append(producer)
            if op not in found[id(producer)][2]:
                found[id(producer)][2].append(op)
        return op

    for output in keras.tree.flatten(model.outputs):
        visit(output)
    return found


def _name(layer) -> str:
    return f"{type(layer).__name__} '{getattr(layer, 'name', layer)}'"


def _is_start(layer, producers) -> bool:
    return (type(layer) is L.Conv2D and tuple(layer.kernel.shape[:3]) == (3, 3, 3)
            and tuple(layer.strides) == (2, 2) and layer.padding.lower() == "valid"
            and len(producers) == 1 and isinstance(producers[0], L.ZeroPadding2D)
            and tuple(map(tuple, producers[0].padding)) == ((1, 1), (1, 1)))


def _why_not_start(layer, producers) -> str:
    reasons = []
    if tuple(layer.kernel.shape[:3]) != (3, 3, 3):
        reasons.append(f"its kernel is {tuple(layer.kernel.shape[:2])} over "
                       f"{layer.kernel.shape[2]} channels, not 3x3 over 3")
    if tuple(layer.strides) != (2, 2):
        reasons.append(f"strides={tuple(layer.strides)}, not (2, 2)")
    if layer.padding.lower() != "valid":
        reasons.append(f"padding='{layer.padding}', not 'valid' after ZeroPadding2D(1)")
    if not (len(producers) == 1 and isinstance(producers[0], L.ZeroPadding2D)
            and tuple(map(tuple, producers[0].padding)) == ((1, 1), (1, 1))):
        reasons.append("it is not preceded by ZeroPadding2D(padding=1) alone")
    return "; ".join(reasons)


def _depthwise_ok(layer, producers) -> bool:
    if layer.depth_multiplier != 1 or tuple(layer.dilation_rate) != (1, 1):
        return False
    size, strides, padding = tuple(layer.kernel_size), tuple(layer.strides), layer.padding.lower()
    for k in (3, 5):
        if size != (k, k):
            continue
        if strides == (1, 1) and padding == "same":
            return True
        pad = (k // 2, k // 2)
        if padding == "valid" and strides in ((1, 1), (2, 2)) and len(producers) == 1 and \
                isinstance(producers[0], L.ZeroPadding2D) and \
                tuple(map(tuple, producers[0].padding)) == (pad, pad):
            return True
    return False


_ACTIVATIONS = {"relu", "relu6", "leaky_relu", "elu", "sigmoid"}


def _supported(layer, producers) -> bool:
    if isinstance(layer, (L.Add, L.Multiply, L.ZeroPadding2D, L.ReLU, L.LeakyReLU, L.ELU,
                          L.Dropout)):
        return True
    if type(layer) is L.DepthwiseConv2D:
        return _depthwise_ok(layer, producers)
    if type(layer) is L.Conv2D:
        return (layer.groups == 1 and tuple(layer.dilation_rate) == (1, 1)
                and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1))
    if isinstance(layer, L.GlobalAveragePooling2D):
        return bool(layer.keepdims)
    if isinstance(layer, L.BatchNormalization):
        return layer.axis in (3, -1)
    if isinstance(layer, L.UpSampling2D):
        return layer.interpolation == "bilinear"
    if isinstance(layer, L.Activation):
        return getattr(layer.activation, "__name__", None) in _ACTIVATIONS
    inner = getattr(layer, "layer", None)  # a pruning wrapper: its layer
    if isinstance(inner, keras.layers.Layer) and type(layer).__name__ == "PruneLowMagnitude":
        return _supported(inner, producers)
    return False


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only what XNNPACK's sparse inference speeds up: 1x1 `Conv2D`.

    `ensure_model_supports_pruning` checks the model as tfmot 0.8.1 does
    (see the module docstring), and says which layer breaks which rule.
    Whether sparse 1x1 convolutions run faster depends on the runtime: see
    docs/migration.md for what was measured.

    Example:

    ```python
    pruned = tfmot.sparsity.keras.prune_low_magnitude(
        model, pruning_schedule=schedule,
        pruning_policy=tfmot.sparsity.keras.PruneForLatencyOnXNNPack())
    ```
    """

    def allow_pruning(self, layer):
        return isinstance(layer, L.Conv2D) and tuple(layer.kernel_size) == (1, 1)

    def ensure_model_supports_pruning(self, model):
        if not isinstance(model, keras.Model) or not (
                graph.is_graph_model(model) or graph.is_graph_subclass(model)):
            raise ValueError(
                "Subclassed models are not supported currently. "
                f"{received('model', getattr(model, 'name', model))}")
        if not model.built or not getattr(model, "inputs", None):
            raise ValueError(
                "Unbuilt models are not supported currently (give the model an Input). "
                f"Received: model={model.name}")
        nodes = _nodes(model)
        producers = {key: p for key, (_, p, _) in nodes.items()}
        consumers = {key: c for key, (_, _, c) in nodes.items()}
        inputs = [keras_internals.keras_history(t)[0] for t in keras.tree.flatten(model.inputs)]
        starts, first_convs = self._walk(inputs, consumers, producers)
        if not starts:
            found = "; ".join(f"{_name(c)}: {_why_not_start(c, producers[id(c)])}"
                              for c in first_convs[:1]) or "no Conv2D on the way from the input"
            raise ValueError(
                "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3` and "
                "`VALID` padding and preceding `ZeroPadding2D` with `padding == 1` in all input "
                f"branches of the model: the first convolution found: {found}. XNNPACK's sparse "
                "inference starts with that convolution (keras.applications models start with "
                "padding='same' or with preprocessing layers). "
                f"Received: model={model.name}")
        outputs = [keras_internals.keras_history(t)[0]
                   for t in keras.tree.flatten(model.outputs)]
        ends, _ = self._walk(outputs, producers, producers,
                             stop=lambda op, _: isinstance(op, L.GlobalAveragePooling2D))
        if not ends:
            raise ValueError(
                "Could not find a `GlobalAveragePooling2D` layer in all output branches: "
                "XNNPACK's sparse inference ends with one on every branch. "
                f"Received: model={model.name}")
        end_ids = {id(e) for e in ends}
        seen, frontier = set(), [c for s in starts for c in consumers[id(s)]]
        while frontier:
            op = frontier.pop()
            if id(op) in seen or id(op) in end_ids:
                continue
            seen.add(id(op))
            if not _supported(op, producers[id(op)]):
                raise ValueError(
                    f"Layer {type(op).__name__} is not supported for the "
                    f"PruneForLatencyOnXNNPack pruning policy: {_name(op)} sits between the "
                    "first convolution and the GlobalAveragePooling2D, where XNNPACK's sparse "
                    "inference runs only 1x1 stride-1 Conv2D, 3x3 or 5x5 DepthwiseConv2D, "
                    "BatchNormalization, ReLU/ELU/LeakyReLU/sigmoid activations, Add, Multiply, "
                    "ZeroPadding2D, Dropout, bilinear UpSampling2D and "
                    f"GlobalAveragePooling2D(keepdims=True). Received: layer={op.name}")
            frontier.extend(consumers[id(op)])

    @staticmethod
    def _walk(sources, next_of, producers, stop=None):
        """`(found, first_convs)`: the layers where `stop` holds on every path
        from `sources` (empty if a path ends first), and the first Conv2D
        met on each path."""
        stop = stop or _is_start
        found, convs, seen, frontier = [], [], set(), list(sources)
        while frontier:
            op = frontier.pop()
            if id(op) in seen:
                continue
            seen.add(id(op))
            if stop(op, producers[id(op)]):
                found.append(op)
                continue
            if type(op) is L.Conv2D:
                convs.append(op)
            following = next_of[id(op)]
            if not following:
                return [], convs
            frontier.extend(following)
        return found, convs

    def __repr__(self):
        return "PruneForLatencyOnXNNPack()"
