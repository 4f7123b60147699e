"""Walking a model: its layers, and which of their weights can be pruned.

The registry maps layer classes to the names of their prunable weights and
the number of gate blocks each weight holds along its last axis (recurrent
cells: LSTM 4, GRU 3). It is searched with `isinstance`, so subclasses of a
registered class are supported too. Layers that hold other layers
(`Bidirectional`, `TimeDistributed`, `MultiHeadAttention`, RNN layers, nested
models and any custom layer) are searched recursively.

Layers of optional packages (`keras_hub`) are registered by name and
resolved once their package is imported: a model that holds one has
imported it, and tfprune never imports it itself.

Extension points, in order of precedence:
1. A layer with a `get_prunable_weights()` method: it returns the variables
   to prune (biases and normalization parameters should not be among them).
2. `register_prunable_layer(cls, {"weight_name": gates, ...})`.
"""

from __future__ import annotations

import dataclasses
import sys

import keras

from tfprune._base import keras_internals

__all__ = [
    "PrunableWeight", "register_prunable_layer", "prunable_weights", "walk",
    "register_transparent", "unwrap", "relative_path", "unique_keys",
]

_REGISTRY: list[tuple[type, dict[str, int]]] = []
#: `(class, inner)`: layers the walk sees through (`PruningWrapper`
#: registers itself), `inner(layer)` giving the layer in their place.
_TRANSPARENT: list = []


def register_transparent(layer_class: type, inner) -> None:
    """Makes `walk` see `inner(layer)` wherever a `layer_class` instance is.

    Wrappers register themselves, so this module needs no import of them.
    """
    _TRANSPARENT.append((layer_class, inner))


def unwrap(layer):
    """The layer a transparent wrapper stands for (else `layer` itself)."""
    for cls, inner in _TRANSPARENT:
        if isinstance(layer, cls):
            return inner(layer)
    return layer


def relative_path(path: str, root: str) -> str:
    """`path` without a leading `root/`."""
    return path[len(root) + 1:] if path.startswith(root + "/") else path


def unique_keys(paths) -> list:
    """Keys for `paths`, one each, in order and all different: a path
    itself where it is the first of its value, else the path with `#2`,
    `#3`, ... appended (the lowest number not taken), so the keys depend on
    the order of `paths` alone.

    Example:

    >>> unique_keys(["a/kernel", "b/kernel", "a/kernel"])
    ['a/kernel', 'b/kernel', 'a/kernel#2']
    """
    paths = list(paths)
    taken, seen, keys = set(paths), set(), []
    for path in paths:
        key = path
        if path in seen:
            n = 2
            while f"{path}#{n}" in taken:
                n += 1
            key = f"{path}#{n}"
            taken.add(key)
        seen.add(path)
        keys.append(key)
    return keys


def register_prunable_layer(layer_class: type, weights: dict[str, int]) -> None:
    """Declares the prunable weights of a layer class.

    Args:
        layer_class: a `keras.layers.Layer` subclass.
        weights: maps the name of each prunable variable (as in
            `variable.name`) to its number of gate blocks along the last
            axis; 1 for ordinary weights.

    Example:

    ```python
    tfprune.register_prunable_layer(MyProjection, {"w": 1})
    ```
    """
    if not (isinstance(layer_class, type) and issubclass(layer_class, keras.layers.Layer)):
        raise TypeError(
            "`layer_class` must be a subclass of `keras.layers.Layer`. "
            f"Received: layer_class={layer_class!r}"
        )
    if not isinstance(weights, dict) or not weights or not all(
        isinstance(k, str) and isinstance(v, int) and v >= 1 for k, v in weights.items()
    ):
        raise ValueError(
            "`weights` must be a non-empty dict mapping variable names to a "
            f"positive number of gate blocks. Received: weights={weights!r}"
        )
    _REGISTRY.insert(0, (layer_class, dict(weights)))


for _cls, _weights in [
    ("Dense", {"kernel": 1}),
    ("EinsumDense", {"kernel": 1}),
    ("Conv1D", {"kernel": 1}),
    ("Conv2D", {"kernel": 1}),
    ("Conv3D", {"kernel": 1}),
    ("Conv1DTranspose", {"kernel": 1}),
    ("Conv2DTranspose", {"kernel": 1}),
    ("Conv3DTranspose", {"kernel": 1}),
    ("SeparableConv1D", {"depthwise_kernel": 1, "pointwise_kernel": 1}),
    ("SeparableConv2D", {"depthwise_kernel": 1, "pointwise_kernel": 1}),
    ("DepthwiseConv1D", {"kernel": 1}),
    ("DepthwiseConv2D", {"kernel": 1}),
    # Before `Embedding`, its base class. With tied weights (the default)
    # `embeddings` is also the output projection (`reverse=True`): one
    # variable, one mask, pruned for both uses at once.
    ("ReversibleEmbedding", {"embeddings": 1, "reverse_embeddings": 1}),
    ("Embedding", {"embeddings": 1}),
    ("SimpleRNNCell", {"kernel": 1, "recurrent_kernel": 1}),
    ("LSTMCell", {"kernel": 4, "recurrent_kernel": 4}),
    ("GRUCell", {"kernel": 3, "recurrent_kernel": 3}),
]:
    if hasattr(keras.layers, _cls):
        _REGISTRY.append((getattr(keras.layers, _cls), _weights))

#: `(module, class name, weights)` of layers from optional packages, added
#: to the registry by `_resolve_optional` once `module` is imported.
_OPTIONAL: list[tuple[str, str, dict[str, int]]] = [
    # A learned (sequence length x hidden) table, an embedding by position.
    ("keras_hub.layers", "PositionEmbedding", {"embeddings": 1}),
]


def _resolve_optional() -> None:
    for entry in list(_OPTIONAL):
        module, name, weights = entry
        layer_class = getattr(sys.modules.get(module), name, None)
        if isinstance(layer_class, type):
            _REGISTRY.append((layer_class, weights))
            _OPTIONAL.remove(entry)


# Layers whose weights are deliberately never pruned: normalization
# parameters, per-channel activations. `prune` does not list them as
# unsupported; neither does it list other layers that own only vectors
# (see `is_not_pruned_by_design`).
NOT_PRUNED = tuple(
    getattr(keras.layers, name)
    for name in [
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "RMSNormalization",
        "SpectralNormalization",
        "Normalization",
        "PReLU",
    ]
    if hasattr(keras.layers, name)
)


@dataclasses.dataclass(frozen=True, eq=False)
class PrunableWeight:
    """One prunable variable and where it lives.

    Attributes:
        variable: the `keras.Variable`.
        layer: the layer that owns it.
        path: names from the searched layer down to the owner, joined by
            "/" (e.g. "bidirectional/forward_lstm/lstm_cell").
        gates: gate blocks along the last axis, each pruned with its own
            threshold.
    """

    variable: keras.Variable
    layer: keras.layers.Layer
    path: str
    gates: int = 1

    @property
    def name(self) -> str:
        """`path/variable_name`, e.g. "lstm/lstm_cell/kernel"."""
        return f"{self.path}/{self.variable.name}"


def children(layer) -> list:
    """Direct sub-layers of `layer`, in tracking order."""
    return keras_internals.flatten_layers(layer, include_self=False, recursive=False)


def own_weights(layer) -> list:
    """Variables owned by `layer` itself, not by its sub-layers."""
    inner = {id(v) for child in children(layer) for v in child.weights}
    return [v for v in layer.weights if id(v) not in inner]


def registered_weights(layer):
    """`{name: gates}` for a registered or self-describing layer, else None."""
    if hasattr(layer, "get_prunable_weights") and callable(layer.get_prunable_weights):
        return {v.name: 1 for v in layer.get_prunable_weights()}
    if _OPTIONAL:
        _resolve_optional()
    for cls, weights in _REGISTRY:
        if isinstance(layer, cls):
            return weights
    return None


def own_prunable(layer, path: str) -> list:
    """The `PrunableWeight`s that `layer` owns itself (not its sub-layers'),
    each with `path`."""
    if hasattr(layer, "get_prunable_weights") and callable(layer.get_prunable_weights):
        return [PrunableWeight(v, layer, path, 1) for v in layer.get_prunable_weights()]
    weights = registered_weights(layer)
    if not weights:
        return []
    return [
        PrunableWeight(v, layer, path, weights[v.name])
        for v in own_weights(layer)
        if v.name in weights
    ]


def walk(layer, path: str | None = None, index_path: tuple = ()):
    """Yields `(index_path, path, layer)` for `layer` and all layers inside.

    `index_path` is the tuple of child positions from `layer` down, stable
    across save and load; `path` joins the layer names with "/". Wrappers
    created by tfprune are transparent: their inner layer takes their place.
    """
    layer = unwrap(layer)
    path = layer.name if path is None else path
    yield index_path, path, layer
    seen = set()
    for i, child in enumerate(children(layer)):
        if id(child) in seen:
            continue
        seen.add(id(child))
        inner = unwrap(child)
        yield from walk(child, f"{path}/{inner.name}", index_path + (i,))


def prunable_weights(layer, include=None) -> list[PrunableWeight]:
    """Prunable variables of `layer` and the layers inside it.

    Args:
        layer: any Keras layer or model.
        include: optional collection of index paths (tuples, see `walk`);
            only layers at or below one of them contribute.

    Returns:
        A list of `PrunableWeight`, in a deterministic order, without
        duplicates.
    """
    found, seen = [], set()
    for index_path, path, sub in walk(layer):
        if include is not None and not any(
            index_path[: len(p)] == tuple(p) for p in include
        ):
            continue
        for pw in own_prunable(sub, path):
            if id(pw.variable) not in seen:
                seen.add(id(pw.variable))
                found.append(pw)
    return found


def is_not_pruned_by_design(layer) -> bool:
    """True for layers whose weights stay dense by design.

    Normalization layers and per-channel activations (`NOT_PRUNED`), and
    any other layer whose own weights are all vectors (rank 0 or 1): such
    weights are per-channel scales and offsets, like biases and
    normalization parameters (the RMS and layer norms `keras_hub` defines
    per model, ConvNeXt's LayerScale), which tfprune never prunes.
    """
    if isinstance(layer, NOT_PRUNED):
        return True
    weights = own_weights(layer)
    return bool(weights) and all(len(v.shape) <= 1 for v in weights)
