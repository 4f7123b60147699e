"""tfmot's `prune_low_magnitude`, `strip_pruning` and `prune_scope`."""

from __future__ import annotations

import keras

from tfprune._base import graph
from tfprune._base.validation import received
from tfprune._training.strip import strip
from tfprune.compat.tfmot import _schedules
from tfprune.compat.tfmot._wrapper import PruneLowMagnitude
from tfprune.compat.tfmot._wrapper import support

__all__ = ["prune_low_magnitude", "prune_scope", "strip_pruning"]

_DEFAULT_SCHEDULE = _schedules.ConstantSparsity(0.5, 0)


def _is_graph(model) -> bool:
    return graph.is_graph_model(model) or graph.is_graph_subclass(model)


def _subclassed_error(model) -> ValueError:
    return ValueError(
        "Subclassed models are not supported currently (as in tfmot; tfprune.prune(model, "
        f"...) prunes them). Received: model={model.name}")


def _clone(model, wrap, policy):
    """A copy of the graph of `model` whose layers `wrap` replaces; the
    layers themselves are shared with `model`, as tfmot shares them."""

    def clone(layer):
        if isinstance(layer, keras.Model):
            if not _is_graph(layer):
                raise _subclassed_error(layer)
            return _clone(layer, wrap, policy)
        if isinstance(layer, PruneLowMagnitude) or isinstance(layer, keras.layers.InputLayer):
            return layer
        if policy is not None and not policy.allow_pruning(layer):
            return layer
        return wrap(layer)

    def pass_operations(op):
        return clone(op) if isinstance(op, keras.layers.Layer) else op

    return graph.clone_model(model, clone_function=pass_operations)


def _type_error(to_prune, hint="") -> ValueError:
    return ValueError(
        "`prune_low_magnitude` can only prune an object of the following types: "
        "keras.models.Sequential, keras functional model, keras.layers.Layer, list of "
        f"keras.layers.Layer. You passed an object of type: {type(to_prune).__name__}{hint}. "
        f"{received('to_prune', getattr(to_prune, 'name', to_prune))}")


def prune_low_magnitude(to_prune, pruning_schedule=_DEFAULT_SCHEDULE, block_size=(1, 1),
                        block_pooling_type="AVG", pruning_policy=None, sparsity_m_by_n=None,
                        **kwargs):
    """Wraps a layer, a list of layers or a Sequential/Functional model for
    pruning during training, as tfmot's `prune_low_magnitude` does.

    A model is cloned: every layer tfmot prunes is wrapped in a
    `PruneLowMagnitude` (the layer itself, shared with `model`, so trained
    weights carry over), layers with nothing to prune stay as they are, and
    a layer tfmot does not know makes it fail. The clone is not compiled.
    Train it with `UpdatePruningStep`; `strip_pruning` removes the wrappers.

    Args:
        to_prune: a layer, a list of layers, or a Sequential or Functional
            model.
        pruning_schedule: a `PruningSchedule`. Defaults to
            `ConstantSparsity(0.5, 0)` (masks updated every 100 steps).
        block_size: `(height, width)` of the blocks of a 2-D kernel pruned
            together. Defaults to `(1, 1)`.
        block_pooling_type: "AVG" (default) or "MAX": a block's score.
        pruning_policy: a `PruningPolicy` deciding which layers of a model
            to prune (and checking the model), or None.
        sparsity_m_by_n: `(m, n)`, e.g. `(2, 4)`: `m` zeros in every `n`
            consecutive input weights of each output, set at the first
            training step; the schedule is not used.
        **kwargs: for a single layer, base layer arguments of the wrapper
            (such as `input_shape`).

    Returns:
        The wrapped layer, list or model.

    Raises:
        ValueError: for an object that is not a layer, list or graph model,
            a subclassed model, or a layer tfmot does not prune.

    Example:

    ```python
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.5, 0.8, begin_step=0, end_step=1000)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    ```
    """
    params = dict(pruning_schedule=pruning_schedule, block_size=block_size,
                  block_pooling_type=block_pooling_type, sparsity_m_by_n=sparsity_m_by_n)

    def wrap(layer, **extra):
        if isinstance(layer, keras.layers.Layer) and support(layer) == "keep":
            return layer
        return PruneLowMagnitude(layer, **params, **extra)  # or its error

    if isinstance(to_prune, list):
        return [layer if isinstance(layer, PruneLowMagnitude) else wrap(layer)
                for layer in to_prune]
    if isinstance(to_prune, keras.Model):
        if not _is_graph(to_prune):
            raise _type_error(to_prune, " (tfprune.prune(model, ...) prunes subclassed models)")
        if pruning_policy is not None:
            pruning_policy.ensure_model_supports_pruning(to_prune)
        return _clone(to_prune, wrap, pruning_policy)
    if isinstance(to_prune, keras.layers.Layer):
        return wrap(to_prune, **kwargs)
    raise _type_error(to_prune)


def strip_pruning(model):
    """The model without its pruning wrappers, the pruned weights zero.

    Args:
        model: a `keras.Model` with `PruneLowMagnitude` layers (or any
            tfprune wrappers).

    Returns:
        A plain Keras model (a copy for Sequential and Functional models),
        with the original layer names.

    Raises:
        ValueError: if `model` is not a `keras.Model`.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"Expected model to be a `keras.Model` instance but got: {model!r}. "
            f"{received('model', model)}")
    return strip(model)


def prune_scope():
    """A custom-object scope with the pruning classes, for loading.

    `import tfprune.compat.tfmot` registers them already, so models load
    without it; it is kept for programs that use it.

    Example:

    ```python
    with tfmot.sparsity.keras.prune_scope():
        model = keras.saving.load_model("pruned.keras")
    ```
    """
    return keras.saving.custom_object_scope({
        "PruneLowMagnitude": PruneLowMagnitude, **_schedules.BUILT_IN})
