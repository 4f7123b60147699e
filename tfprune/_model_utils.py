"""Model plumbing shared by `prune` and `strip`: copying and layer swaps."""

from __future__ import annotations

import warnings

import keras

try:  # Keras keeps the class private; only `isinstance` checks need it.
    from keras.src.models.functional import Functional as _Functional
except ImportError:  # pragma: no cover - future Keras layouts
    _Functional = None

from tfprune._validation import received


def is_graph_model(model) -> bool:
    """True for Sequential and Functional models (rebuilt by cloning)."""
    if isinstance(model, keras.Sequential):
        return True
    return _Functional is not None and type(model) is _Functional


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


def _copy_or_share(layer, shared):
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:  # no usable config: keep the layer itself
        shared.append(layer.name)
        return layer


def copy_graph_model(model, clone_function=None):
    """A copy of a Sequential/Functional model with its weights.

    Every layer is re-created from its config; a layer that cannot be (no
    `get_config`) is shared with `model` and a warning names it. With
    `clone_function`, that function is applied to each copied layer (it may
    return a wrapper around it or a replacement).
    """
    shared = []
    copy = keras.models.clone_model(
        model, clone_function=lambda layer: _copy_or_share(layer, shared), recursive=True
    )
    copy.set_weights(model.get_weights())
    if shared:
        warnings.warn(
            f"tfprune: layers {shared} could not be re-created from their config and are "
            "shared with the original model (training the result changes "
            "them too). Implement `get_config()` on them to avoid this.",
            UserWarning,
            stacklevel=3,
        )
    if clone_function is None:
        return copy
    # Re-wire the copy around the replacements; layers are reused, not copied.
    return keras.models.clone_model(copy, clone_function=clone_function, recursive=True)


def replace_children(model, replace) -> int:
    """Swaps sub-layers held as attributes of a subclassed model, in place.

    `replace(layer)` returns the new layer, or the same object to keep it.
    Attributes holding a tracked sub-layer, or a list/dict of them, are
    visited. Returns the number of layers replaced.
    """
    tracker = model._tracker
    tracked = {id(layer) for layer in model._layers}
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
            tracker.replace_tracked_value("layers", old, new)
            count += 1
        return new

    for attr, value in list(vars(model).items()):
        if attr == "_layers":
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
