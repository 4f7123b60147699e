"""Saving subclassed models pruned in place: `.keras` files keep the wrappers.

`prune` wraps the sub-layers of a subclassed model in place, but a `.keras`
file re-creates a subclassed model by calling its class on its config, which
builds plain sub-layers: the saved masks and steps would have nowhere to go.
So a model pruned in place gets a class of its own, made here once per user
class: a subclass of it (so `isinstance` checks and the user's methods are
unchanged, and its name is the user class's name) whose config is the user
class's config plus where each wrapper sits, by attribute path. Loading runs
the user class on its own config, wraps the same sub-layers again and hands
the model to Keras, which then loads every variable (masks and steps
included) into place. `strip` gives the model its class back.

Every such class serializes under one registered name,
`tfprune>PrunedSubclassedModel`, so a file loads wherever tfprune and the
user's class are importable, without `custom_objects`.
"""

from __future__ import annotations

import keras

from tfprune._base import keras_internals
from tfprune._base.graph import copy_graph_model
from tfprune._base.graph import is_graph_model
from tfprune._base.graph import is_graph_subclass
from tfprune._base.graph import replace_children
from tfprune._training.wrapper import PruningWrapper
from tfprune._training.wrapper import build_like_inner

REGISTERED_NAME = "tfprune>PrunedSubclassedModel"
_CLASSES: dict = {}


@keras.saving.register_keras_serializable(package="tfprune", name="PrunedSubclassedModel")
class PrunedSubclassedModel:
    """The part every pruned subclassed model's class shares (a mixin).

    `get_config` holds the user class's own serialized config (`"model"`) and
    the wrappers (`"wrappers"`: attribute path -> wrapper config without its
    inner layer); `from_config` rebuilds both.
    """

    def get_config(self):
        base = type(self)._tfprune_base
        return {
            "model": {
                "module": base.__module__,
                "class_name": base.__name__,
                "registered_name": keras.saving.get_registered_name(base),
                "config": super().get_config(),
                "build_config": self.get_build_config(),
            },
            "wrappers": wrapper_paths(self),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = keras.saving.deserialize_keras_object(
            config["model"], custom_objects=custom_objects
        )
        rewrap(model, config["wrappers"])
        mark(model)
        return model


def pruned_class(base: type) -> type:
    """The pruned-in-place class of the user class `base` (made once)."""
    if issubclass(base, PrunedSubclassedModel):
        return base
    if base not in _CLASSES:
        cls = type(base.__name__, (PrunedSubclassedModel, base), {"_tfprune_base": base})
        cls.__qualname__ = base.__qualname__
        cls.__module__ = base.__module__
        keras_internals.register_class_name(cls, REGISTERED_NAME)
        _CLASSES[base] = cls
    return _CLASSES[base]


def mark(model) -> None:
    """Gives a model pruned in place its pruned class."""
    keras_internals.set_class(model, pruned_class(type(model)))


def unmark(model) -> None:
    """Gives a stripped model its own class back."""
    if isinstance(model, PrunedSubclassedModel):
        keras_internals.set_class(model, type(model)._tfprune_base)


# ------------------------------------------------------------ wrapper paths
def _children(model):
    """`(path, layer)` of the sub-layers held as attributes, in lists and in
    dicts (the places `replace_children` visits)."""
    for attr, value in _attributes(model):
        if isinstance(value, keras.layers.Layer):
            yield [attr], value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, keras.layers.Layer):
                    yield [attr, i], item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, keras.layers.Layer) and isinstance(key, str):
                    yield [attr, key], item


def _attributes(model):
    """`(name, value)` of the model's own attributes."""
    for attr, value in vars(model).items():
        # Keras' list of sub-layers and TensorFlow's checkpoint
        # dependencies hold them again.
        if keras_internals.is_framework_attribute(attr):
            continue
        modules = keras_internals.torch_modules(attr, value)
        if modules is not None:
            # PyTorch backend: a layer is a `torch.nn.Module`, which keeps
            # the modules assigned to its attributes there.
            yield from ((k, v) for k, v in modules.items()
                        if not keras_internals.is_framework_attribute(k))
            continue
        yield attr, value


def _positions(graph, prefix=()) -> dict:
    """`{"i/j/...": layer}`: each layer of a Sequential/Functional model by
    its position among the model's layers (Inputs left out, nested graph
    models walked into; a wrapper stands at its layer's position). Layer
    names cannot key a saved model's wrappers: sub-layers created without a
    name get a new one (`dense_5`) each time the model is built."""
    found = {}
    layers = [l for l in graph.layers if not isinstance(l, keras.layers.InputLayer)]
    for i, layer in enumerate(layers):
        key = (*prefix, i)
        inner = layer.layer if isinstance(layer, PruningWrapper) else layer
        if not isinstance(layer, PruningWrapper) and isinstance(inner, keras.Model) and (
                is_graph_model(inner) or is_graph_subclass(inner)):
            found.update(_positions(inner, key))
        else:
            found["/".join(map(str, key))] = layer
    return found


def _spec(wrapper) -> dict:
    config = wrapper.get_config()
    config.pop("layer")
    return config


def wrapper_paths(model, prefix=()) -> list:
    """Where the wrappers of a model pruned in place sit.

    One entry per sub-layer: `{"path": [...], "wrapper": config}` for a
    wrapper, `{"path": [...], "positions": {position: config}}` for a copied
    Sequential/Functional sub-model holding wrappers (see `_positions`); subclassed sub-models
    are visited with their path as a prefix.
    """
    entries, seen = [], set()
    for path, layer in _children(model):
        if id(layer) in seen:  # one place per layer, the first visited
            continue
        seen.add(id(layer))
        path = [*prefix, *path]
        if isinstance(layer, PruningWrapper):
            entries.append({"path": path, "wrapper": _spec(layer)})
        elif is_graph_model(layer) or is_graph_subclass(layer):
            specs = {key: _spec(w) for key, w in _positions(layer).items()
                     if isinstance(w, PruningWrapper)}
            if specs:
                entries.append({"path": path, "positions": specs})
        elif isinstance(layer, keras.Model):
            entries.extend(wrapper_paths(layer, path))
    return entries


def _wrap(layer, spec):
    return build_like_inner(PruningWrapper(layer, **spec))


def _at(model, path):
    value = model
    for step in path:
        value = value[step] if isinstance(value, (list, dict)) else getattr(value, step)
    return value


def rewrap(model, entries) -> None:
    """Wraps the sub-layers of a freshly built model as `entries` say."""
    try:
        by_id = {id(_at(model, e["path"])): e for e in entries}
    except (AttributeError, IndexError, KeyError) as e:
        raise ValueError(
            "The saved pruned model has wrappers at sub-layers that its class no "
            f"longer creates ({type(e).__name__}: {e}). "
            f"Received: model={model.name}"
        ) from e
    _replace(model, by_id)


def _replace(model, by_id) -> None:
    def replace(layer):
        entry = by_id.get(id(layer))
        if entry is not None and "wrapper" in entry:
            return _wrap(layer, entry["wrapper"])
        if entry is not None:
            if "positions" in entry:  # by position in the graph
                fresh = _positions(layer)
                specs = {fresh[key].name: spec for key, spec in entry["positions"].items()
                         if key in fresh}
            else:  # files of tfprune 0.1.0: by layer name
                specs = entry["graph"]
            return copy_graph_model(
                layer, lambda sub: _wrap(sub, specs[sub.name]) if sub.name in specs else sub
            )
        if isinstance(layer, keras.Model) and not (is_graph_model(layer) or
                                                   is_graph_subclass(layer)):
            _replace(layer, by_id)
        return layer

    replace_children(model, replace)
