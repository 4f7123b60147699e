"""`tfprune.strip`: turn a pruned model back into a plain Keras model."""

from __future__ import annotations

import keras

from tfprune._base.graph import clone_model
from tfprune._base.graph import copy_graph_model
from tfprune._base.graph import is_graph_model
from tfprune._base.graph import is_graph_subclass
from tfprune._base.graph import replace_children
from tfprune._base.graph import warn_if_class_lost
from tfprune._base.validation import received
from tfprune._training import subclassed
from tfprune._training.wrapper import PruningWrapper
from tfprune._training.wrapper import find_wrappers


def _bake(wrapper: PruningWrapper) -> None:
    """Writes weight x mask into every masked variable (the recurrent biases
    that `Units` masks with their units included)."""
    for slot in wrapper.slots:
        variable = slot.weight.variable
        variable.assign(keras.ops.multiply(variable, keras.ops.cast(slot.mask, variable.dtype)))


def _unwrap_in_place(wrapper: PruningWrapper):
    _bake(wrapper)
    wrapper.restore_constraints()
    return wrapper.layer


def strip(model):
    """Removes the pruning wrappers; the masks are baked into the weights.

    The result is a plain Keras model with no tfprune layer in it: it saves,
    loads and exports like any model, and makes the same predictions as the
    pruned model, with the pruned weights exactly zero.

    A Sequential or Functional model is copied: the pruned model is left as
    it was (it can go on training). So is a subclass of one that computes
    its graph (does not override `call`); its copy is a plain Functional
    model, and a warning says so, unless its constructor takes
    `(inputs, outputs, name)`. Any other subclassed model is stripped in
    place and returned.

    Args:
        model: a model (or a single `PruningWrapper`) returned by
            `tfprune.prune` or built with `PruningWrapper` layers. A model with
            no wrapper is returned as it is.

    Returns:
        The plain model (or layer).

    Raises:
        TypeError: if `model` is not a Keras model or layer.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[tfprune.PruningCallback()])
    final = tfprune.strip(pruned)
    final.save("model.keras")
    print(tfprune.sparsity_report(final))
    ```
    """
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"`model` must be a Keras model or layer. {received('model', model)}")
    if isinstance(model, PruningWrapper):
        return _unwrap_in_place(model)
    wrappers = find_wrappers(model)
    if not wrappers:
        return model
    if is_graph_model(model) or is_graph_subclass(model):
        for wrapper in wrappers:
            _bake(wrapper)

        def unwrap(layer):
            return layer.layer if isinstance(layer, PruningWrapper) else layer

        # Bare operations (`x + y`, `keras.ops` calls) pass through `unwrap`
        # unchanged; `copy_graph_model` then copies every layer and operation.
        unwrapped = clone_model(model, clone_function=unwrap, recursive=True)
        warn_if_class_lost(model, unwrapped, stacklevel=2)
        return copy_graph_model(unwrapped)
    _strip_subclassed(model)
    subclassed.unmark(model)
    return model


def _strip_subclassed(model):
    def replace(layer):
        if isinstance(layer, PruningWrapper):
            return _unwrap_in_place(layer)
        if is_graph_model(layer) or is_graph_subclass(layer):
            return strip(layer)
        if isinstance(layer, keras.Model):
            _strip_subclassed(layer)
        return layer

    replace_children(model, replace)


