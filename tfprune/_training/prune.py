"""`tfprune.prune`: wrap every prunable layer of a model."""

from __future__ import annotations

import logging
import warnings

import keras

from tfprune import schedules as schedules_lib
from tfprune import strategies as strategies_lib
from tfprune._base import walk
from tfprune._base.graph import check_model
from tfprune._base.graph import copy_graph_model
from tfprune._base.graph import is_graph_model
from tfprune._base.graph import is_graph_subclass
from tfprune._base.graph import replace_children
from tfprune._base.validation import received
from tfprune._training import subclassed
from tfprune._training.wrapper import PruningWrapper
from tfprune._training.wrapper import build_like_inner
from tfprune._training.wrapper import find_wrappers

logger = logging.getLogger("tfprune")


class _Selector:
    """Which layers to prune: names, classes and predicates, any matching."""

    def __init__(self, layers):
        if layers is None:
            self.items = None
            return
        items = list(layers) if isinstance(layers, (list, tuple, set)) else [layers]
        for item in items:
            if not (
                isinstance(item, str)
                or (isinstance(item, type) and issubclass(item, keras.layers.Layer))
                or (callable(item) and not isinstance(item, (type, keras.layers.Layer)))
            ):
                raise TypeError(
                    "`layers` must be a layer name, a layer class, a predicate "
                    "`fn(layer) -> bool`, or a list of those. "
                    f"{received('layers', layers)}"
                )
        self.items = items

    def matches(self, layer) -> bool:
        if self.items is None:
            return True
        for item in self.items:
            if isinstance(item, str):
                if layer.name == item:
                    return True
            elif isinstance(item, type):
                if isinstance(layer, item):
                    return True
            elif item(layer):
                return True
        return False

    def check_names(self, model) -> None:
        if self.items is None:
            return
        names = {sub.name for _, _, sub in walk.walk(model)}
        missing = [i for i in self.items if isinstance(i, str) and i not in names]
        if missing:
            raise ValueError(
                f"`layers` names {missing} match no layer of model "
                f"'{model.name}'. Layer names: {sorted(names)}. "
                f"Received: layers={self.items!r}"
            )


def _selection(layer, selector):
    """Index paths of the selected layers inside `layer` that own prunable
    weights, and of all those layers."""
    selected, owners = [], []
    for index_path, _, sub in walk.walk(layer):
        if not _owns_prunable(sub):
            continue
        owners.append(index_path)
        chain = [layer] + _ancestors(layer, index_path)
        if any(selector.matches(item) for item in chain):
            selected.append(index_path)
    return selected, owners


def _owns_prunable(layer) -> bool:
    return bool(walk.own_prunable(layer, layer.name))


def _ancestors(root, index_path):
    """Layers from `root`'s children down to the one at `index_path`."""
    layers, layer = [], root
    for i in index_path:
        layer = walk.children(layer)[i]
        if isinstance(layer, PruningWrapper):
            layer = layer.layer
        layers.append(layer)
    return layers


def _unsupported(layer) -> bool:
    """A leaf layer with trainable weights that tfprune does not know."""
    if walk.is_not_pruned_by_design(layer) or walk.registered_weights(layer):
        return False
    if walk.children(layer):
        return False
    return any(
        "bias" not in v.name for v in walk.own_weights(layer) if v.trainable
    )


def prune(model, sparsity, *, layers=None, strategy=None):
    """Wraps every prunable layer of `model` for pruning during training.

    Works on Sequential, Functional, subclassed and nested models. A
    Sequential or Functional model is copied (weights included) and the
    copy is returned with its prunable layers wrapped in `PruningWrapper`;
    the original is left untouched. Any graph Keras builds is supported:
    bare operations (`x + y`, `x[:, 0]`, `keras.ops` calls), `Lambda`
    layers, shared layers, nested models, several or dict inputs and
    outputs. A subclass of Functional that does not override `call` (e.g. a
    `keras_hub` model) runs its graph, so it is copied the same way; the
    copy is a plain Functional model, and a warning says so, unless its
    constructor takes `(inputs, outputs, name)`. Any other subclassed model
    cannot be copied in general, so its sub-layers are wrapped in place and
    the same object is returned. Layers that hold other layers (custom
    blocks, `Bidirectional`, `TimeDistributed`, `MultiHeadAttention`) are
    wrapped whole and have the selected layers inside them pruned.

    Layers tfprune cannot prune (an unknown custom layer without
    `get_prunable_weights()`) are left as they are and listed in a warning;
    normalization layers and biases are never pruned.

    Args:
        model: a built `keras.Model` (or a single built layer, which is
            returned wrapped).
        sparsity: a number in [0, 1) or a `tfprune.schedules.PruningSchedule`.
        layers: optional selection: a layer name, a layer class, a predicate
            `fn(layer) -> bool`, or a list mixing them. A layer is pruned if
            it, or a layer containing it, matches. A name that matches no
            layer is an error. Defaults to every prunable layer.
        strategy: how to prune: a `tfprune.strategies.Strategy` or a preset
            name ("dense", "recurrent", "regression", "auto"; see
            docs/strategies.md). Every wrapper carries it, and
            `PruningCallback` applies it to the whole model. Layers it
            protects are left unwrapped. Defaults to `Strategy()`:
            magnitude, unstructured, every tensor at the schedule's sparsity.

    Returns:
        The model with its selected prunable layers wrapped.

    Raises:
        TypeError: if `model` is not a Keras model or layer, or `layers`,
            `sparsity` or `strategy` has the wrong type.
        ValueError: if the model is not built, already pruned, a name in
            `layers` matches nothing, nothing is prunable (or everything is
            protected), `sparsity` is out of [0, 1) or beyond what the
            strategy's granularity allows, or `strategy` is an unknown name.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(64), keras.layers.Dense(1)])
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.9, 0, 1000),
                           strategy="dense")
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=5, callbacks=[tfprune.PruningCallback()])
    final = tfprune.strip(pruned)
    ```
    """
    check_model(model)
    schedule = schedules_lib.get(sparsity, "sparsity")
    strategy = strategies_lib.Strategy() if strategy is None else strategies_lib.get(strategy)
    selector = _Selector(layers)
    existing = find_wrappers(model)
    if existing:
        raise ValueError(
            f"Model '{model.name}' is already pruned: it contains PruningWrapper "
            f"layers {[w.name for w in existing]}; a layer can be wrapped only once. "
            f"Strip it first with `tfprune.strip`. Received: model={model.name}"
        )
    selector.check_names(model)
    protected = _protected_tensors(model, strategy, schedule)
    prefix = f"{model.name}/" if isinstance(model, keras.Model) else ""

    wrapped, unsupported, skipped = [], [], []
    # Where the layer `wrap` is given sits, so that its tensors get the
    # names the plan gives them: "model/nested/layer/kernel" for a layer of
    # a nested graph model (`paths`, filled by `copy_graph_model`), `base`
    # for a sub-layer of a subclassed model.
    where = {"base": prefix, "graph": "", "paths": {}}

    def wrap(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        selected, owners = _selection(layer, selector)
        path = where["paths"].get(id(layer))
        parent = where["base"] if path is None else where["graph"] + path.rpartition("/")[0] + "/"
        names = {parent + pw.name for pw in walk.prunable_weights(layer, include=selected)}
        if selected and names <= protected:
            skipped.append(layer.name)
            return layer
        if selected:
            wrapped.append(layer.name)
            include = None if selected == owners else selected
            return PruningWrapper(layer, schedule, include=include, strategy=strategy)
        unsupported.extend(
            sub.name for _, _, sub in walk.walk(layer) if _unsupported(sub)
        )
        return layer

    if not isinstance(model, keras.Model):
        result = build_like_inner(wrap(model))
        if result is model:
            raise ValueError(
                f"Layer '{model.name}' has nothing tfprune can prune. "
                f"Received: model={model.name}"
            )
        return result
    if is_graph_model(model) or is_graph_subclass(model):
        result = copy_graph_model(model, wrap, paths=where["paths"])
    else:
        result = model
        _wrap_subclassed(model, wrap, where)
        if find_wrappers(model):
            subclassed.mark(model)  # so that `.keras` files keep the wrappers
    if not wrapped and not find_wrappers(result) and skipped:
        raise ValueError(
            f"The strategy protects every selected layer of model '{model.name}' "
            f"({sorted(skipped)}), so nothing is left to prune. "
            f"Received: strategy={strategy!r}"
        )
    if not wrapped and not find_wrappers(result):
        raise ValueError(
            f"No layer of model '{model.name}' was selected for pruning "
            "(supported: Dense, EinsumDense, Conv*, SeparableConv*, DepthwiseConv*, "
            "Embedding, MultiHeadAttention, SimpleRNN/LSTM/GRU and layers holding them). "
            f"Received: layers={layers!r}"
        )
    if unsupported:
        warnings.warn(
            f"tfprune.prune left these layers unpruned because tfprune does not "
            f"know their weights: {sorted(set(unsupported))}. Give them a "
            "`get_prunable_weights()` method or use "
            "`tfprune.register_prunable_layer` to prune them.",
            UserWarning,
            stacklevel=2,
        )
    logger.info("tfprune.prune wrapped %d layers of '%s'", len(find_wrappers(result)), model.name)
    return result


def _protected_tensors(model, strategy, schedule) -> set:
    """Names (`PrunableWeight.name`) of the tensors `strategy` protects in
    `model`; checks that the strategy can reach the schedule's end."""
    plan = strategy.plan(model)
    granularity, allocation = plan.strategy.granularity, plan.strategy.allocation
    final = schedule.final_sparsity
    if final > granularity.max_sparsity + 1e-9:
        raise ValueError(
            f"{granularity!r} allows a sparsity of at most {granularity.max_sparsity:g}, "
            f"but the schedule ends at {final:g}. Received: sparsity={schedule!r}"
        )
    if not allocation.needs_scores:  # fail now rather than in the middle of `fit`
        allocation.allocate(plan.candidates(), final, final)
    return {plan.weights[t].name for g in plan.groups if g.protected for t in g.group.tensors}


def _wrap_subclassed(model, wrap, where):
    """Wraps the sub-layers of a subclassed model in place; `where["base"]`
    is the path (with a trailing "/") of `model`'s sub-layers."""
    base = where["base"]

    def replace(layer):
        where["base"], where["graph"] = base, base
        if is_graph_model(layer) or is_graph_subclass(layer):
            sub = copy_graph_model(layer, wrap, paths=where["paths"])
            return sub if find_wrappers(sub) else layer
        if isinstance(layer, keras.Model):
            where["base"] = f"{base}{layer.name}/"
            _wrap_subclassed(layer, wrap, where)
            return layer
        return build_like_inner(wrap(layer))

    replace_children(model, replace)


def selected_weights(model, layers=None) -> list:
    """The prunable weights of `model` that `layers` selects, as `prune` does.

    Args:
        model: a built Keras model or layer.
        layers: as in `prune`: a layer name, class or predicate, or a list
            of them; None selects every prunable weight.

    Returns:
        The selected `PrunableWeight`s, in `walk` order.

    Raises:
        ValueError: if a name in `layers` matches no layer.
        TypeError: if `layers` has the wrong type.
    """
    selector = _Selector(layers)
    selector.check_names(model)
    if selector.items is None:
        return walk.prunable_weights(model)
    selected, _ = _selection(model, selector)
    return walk.prunable_weights(model, include=selected)
