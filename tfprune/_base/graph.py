"""Model plumbing shared by `prune` and `strip`: copying and layer swaps."""

from __future__ import annotations

import inspect
import warnings

import keras

from tfprune._base import keras_internals
from tfprune._base import walk
from tfprune._base.validation import received


def is_graph_model(model) -> bool:
    """True for Sequential and Functional models (rebuilt by cloning)."""
    if isinstance(model, keras.Sequential):
        return True
    functional = keras_internals.functional_class()
    return functional is not None and type(model) is functional


def is_graph_subclass(model) -> bool:
    """True for a subclass of Functional whose computation is its graph.

    A `keras.Model` subclass that calls `super().__init__(inputs, outputs)`
    (`keras_hub` backbones and tasks are such models) runs the layers of its
    graph, whatever its attributes hold, so swapping those attributes in
    place changes nothing: it must be copied like a Functional model. A
    subclass that overrides `call` computes something else and is not one.
    """
    functional = keras_internals.functional_class()
    return (
        functional is not None
        and isinstance(model, functional)
        and type(model) is not functional
        and getattr(type(model), "call", None) is functional.call
    )


def warn_if_class_lost(model, copy, stacklevel: int = 2) -> None:
    """Warns when the copy of a graph model subclass is of a plainer class.

    `keras.models.clone_model` re-creates a subclass only when its
    constructor takes `(inputs, outputs, name)`; otherwise the copy is a
    plain Functional (or Sequential) model with the same graph.
    `stacklevel` is the one the caller would give `warnings.warn`.
    """
    if type(copy) is not type(model):
        warnings.warn(
            f"tfprune: model '{model.name}' is a {type(model).__name__}; its copy is a "
            f"plain {type(copy).__name__} model with the same layers, graph and weights. "
            f"Methods and attributes that {type(model).__name__} adds (a preprocessor, "
            "a custom `train_step`) are not on the copy.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def check_model(model, name: str = "model"):
    """Checks that `model` is a built Keras model or layer."""
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"`{name}` must be a Keras model or layer. {received(name, model)}"
        )
    if not model.built:
        raise ValueError(
            f"`{name}` must be built before it can be pruned or stripped: give "
            "it an `Input`, call `model.build(input_shape)` or call it on a "
            f"batch of data. Received: {name}={model.name} (not built)"
        )


def _is_operation(op) -> bool:
    """True for a bare graph operation: a `keras.ops` call, an operator
    (`x + y`), a slice (`x[:, 0]`) written inline in a Functional model.
    These are `keras.Operation`s but not layers: they hold no weights and no
    sub-layers, so the model walks never see them (`Model.layers` skips them).
    """
    return not isinstance(op, keras.layers.Layer)


def _copy_operation(op):
    """A new instance of a bare operation, or `op` itself when its config
    cannot re-create it (it is stateless, so sharing it is harmless)."""
    try:
        return op.__class__.from_config(op.get_config())
    except Exception:  # e.g. an op built with non-serializable arguments
        return op


def _copy_or_share(layer, shared):
    if _is_operation(layer):
        return _copy_operation(layer)
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:  # no usable config: keep the layer itself
        if layer.weights:  # a weightless layer (a `Lambda`) is shared silently
            shared.append(layer.name)
        return layer


def _layers_only(clone_function):
    """`clone_function` applied to layers; bare operations pass unchanged.

    `keras.models.clone_model` calls its clone function on every operation
    of a Functional graph, layers and bare operations alike; tfprune's clone
    functions (wrap, unwrap) only know layers.
    """

    def clone(op):
        return op if _is_operation(op) else clone_function(op)

    return clone


def copy_graph_model(model, clone_function=None, paths=None):
    """A copy of a Sequential/Functional model with its weights.

    Every layer and every bare operation of the graph is re-created from its
    config, nested Sequential/Functional models are copied recursively, and a
    layer called several times stays one (shared) layer in the copy. A layer
    with weights that cannot be re-created (no `get_config`, or a config its
    constructor rejects) is shared with `model` and a warning names it,
    unless `model` is a graph subclass that its own config re-creates (a
    `keras_hub` backbone): the copy is then built by its constructor.

    Args:
        model: a Sequential or Functional model, or a subclass of one (see
            `is_graph_model` and `is_graph_subclass`). A subclass whose
            constructor does not take `(inputs, outputs, name)` is copied as
            a plain Functional model, and a warning says so.
        clone_function: optional `fn(layer) -> layer`, applied to each
            copied layer, in nested graph models too; it may return a wrapper
            around the layer or a replacement. It is called once per layer,
            however many times the layer is called in the graph, and never
            on bare operations or `Input`s. Defaults to `None`: a plain copy.
        paths: optional dict, filled before `clone_function` runs with
            `{id(layer): path}` for the copy's layers, the path as
            `walk.walk` gives it from the copy ("model/nested/layer"), so
            that `clone_function` can tell where a layer of a nested model
            sits.

    Returns:
        The new model.
    """
    shared = []
    copy = clone_model(
        model, clone_function=lambda layer: _copy_or_share(layer, shared), recursive=True
    )
    if shared and is_graph_subclass(model):
        rebuilt = _rebuild_from_config(model)
        if rebuilt is not None:
            copy, shared = rebuilt, []
    _copy_weights(model, copy)
    if shared:
        warnings.warn(
            f"tfprune: layers {shared} could not be re-created from their config and are "
            "shared with the original model (training the result changes "
            "them too). Implement `get_config()` on them to avoid this.",
            UserWarning,
            stacklevel=3,
        )
    if paths is not None:
        for _, path, layer in walk.walk(copy):
            paths.setdefault(id(layer), path)  # a shared layer: where it is first met
    if clone_function is not None:
        # Re-wire the copy around the replacements; layers are reused, not copied.
        copy = clone_model(copy, clone_function=_layers_only(clone_function), recursive=True)
    warn_if_class_lost(model, copy, stacklevel=3)
    return copy


def clone_model(model, clone_function=None, recursive=False):
    """`keras.models.clone_model`, the same on every supported Keras.

    A graph subclass whose constructor cannot take `(inputs, outputs,
    name)` is cloned as a plain Functional model of its graph (Keras 3.12
    calls such a constructor with those arguments and fails; later releases
    make the plain model themselves).
    """
    if is_graph_subclass(model) and not _takes_graph_arguments(type(model)):
        model = keras.Model(model.input, model.output, name=model.name)
    return keras.models.clone_model(model, clone_function=clone_function, recursive=recursive)


def _takes_graph_arguments(cls) -> bool:
    """Whether `cls(inputs, outputs, name=...)` can be called at all."""
    try:
        inspect.signature(cls.__init__).bind(None, None, None, name=None)
    except TypeError:
        return False
    return True


def _copy_weights(model, copy) -> None:
    """`copy.set_weights(model.get_weights())`, one variable at a time: no
    host copy of the whole model at once (a language model's weights)."""
    source, target = model.weights, copy.weights
    if [tuple(v.shape) for v in source] != [tuple(v.shape) for v in target]:
        copy.set_weights(model.get_weights())  # Keras explains the mismatch
        return
    for s, t in zip(source, target):
        # A copy of the value, not the value: on JAX, `fit` and `predict`
        # donate the copy's buffers, which must not be the original's.
        t.assign(keras.ops.copy(s.value))


def _rebuild_from_config(model):
    """`model` re-created by its own class from its config, or None.

    A graph subclass whose constructor builds its graph from a few arguments
    (`keras_hub` backbones) re-creates every layer that way, even layers
    whose own config does not round-trip. None when that fails or gives
    weights of other shapes than `model`'s.
    """
    try:
        rebuilt = type(model).from_config(model.get_config())
    except Exception:  # no usable config: the caller shares layers instead
        return None
    if [tuple(v.shape) for v in rebuilt.weights] != [tuple(v.shape) for v in model.weights]:
        return None
    return rebuilt


def replace_children(model, replace) -> int:
    """Swaps sub-layers held as attributes of a subclassed model, in place.

    `replace(layer)` returns the new layer, or the same object to keep it.
    Attributes holding a tracked sub-layer, or a list/dict of them, are
    visited. Returns the number of layers replaced.
    """
    tracked = {id(layer) for layer in keras_internals.tracked_layers(model)}
    # One replacement per layer, however many places refer to it (an
    # attribute and the checkpoint-dependency dict both hold it).
    replaced = {}
    count = 0

    def swap(old):
        nonlocal count
        if not isinstance(old, keras.layers.Layer):
            return old
        if id(old) in replaced:
            return replaced[id(old)]
        if id(old) not in tracked:
            return old
        new = replace(old)
        replaced[id(old)] = new
        if new is not old:
            keras_internals.replace_tracked_layer(model, old, new)
            count += 1
        return new

    for attr, value in list(vars(model).items()):
        if attr == keras_internals.TRACKED_LAYERS_ATTR:
            continue
        if isinstance(value, keras.layers.Layer):
            new = swap(value)
            if new is not value:
                object.__setattr__(model, attr, new)
        elif isinstance(value, list):
            for i, item in enumerate(list(value)):
                new = swap(item)
                if new is not item:
                    list.__setitem__(value, i, new)
        elif isinstance(value, dict):
            for key, item in list(value.items()):
                new = swap(item)
                if new is not item:
                    dict.__setitem__(value, key, new)
    # Retrace the compiled functions against the new layers.
    for fn in ("train_function", "test_function", "predict_function"):
        if getattr(model, fn, None) is not None:
            setattr(model, fn, None)
    return count
