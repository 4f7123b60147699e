"""Every private Keras (and TensorFlow) internal tfprune relies on, in one place.

Keras exports no API for some of what a pruning library must do: walk the
layers a model tracks, read the call graph of a Functional model, add
variables to a built layer, rebuild the compiled train function, register a
generated class for saving. Each such access is one function here, named for
what it does, with the private name it uses. The rest of the package calls
these functions and never touches a private Keras name or imports from
`keras.src` itself (`tests/project/test_keras_internals.py` checks both, and
exercises every function against the installed Keras). A Keras release that
moves one of them breaks this module and its test, and nothing else.

The supported Keras range is pinned in `setup.cfg`; `make test-keras-range`
runs that test against the oldest release of the range.

Keras internals (`PRIVATE_NAMES`):

| function | Keras internal | why |
| --- | --- | --- |
| `functional_class` | `keras.src.models.functional.Functional` | tell Functional models (and graph subclasses such as keras_hub backbones) from subclassed ones |
| `in_stateless_scope` | `keras.src.backend.common.stateless_scope.in_stateless_scope` | the wrapper passes an outer stateless scope's values on (JAX `fit`) |
| `register_class_name` | `keras.src.saving.object_registration.GLOBAL_CUSTOM_NAMES` | generated pruned subclasses save under one registered name |
| `flatten_layers` | `Layer._flatten_layers` | sub-layers in tracking order |
| `sequential_graph` | `Sequential._functional` | the Functional graph behind a Sequential |
| `nodes_by_depth` | `Functional._nodes_by_depth` | the calls of a graph, in order |
| `keras_history` | `KerasTensor._keras_history` | the op and call that produced a symbolic tensor |
| `inbound_nodes` | `Operation._inbound_nodes` | the calls of an op |
| `tracked_layers`, `replace_tracked_layer`, `TRACKED_LAYERS_ATTR` | `Layer._tracker`, `Layer._layers` | swap sub-layers of a subclassed model in place |
| `unlocked_tracker` | `Layer._tracker.lock()/unlock()` | add variables to a built layer |
| `inputs_struct` | `Functional._inputs_struct` | the nested structure of a model's inputs |
| `copy_layout` | `Variable._layout`, `Variable._direct_assign` | lay masks out like their sharded kernels |
| `set_call_signature` | `Layer._call_signature` | the wrapper binds call arguments like its inner layer |
| `input_shape_arg`, `set_input_shape_arg` | `Layer._input_shape_arg` | `input_shape=` given to a wrapper in a Sequential |
| `make_train_function` | `TensorFlowTrainer._make_function` | the compiled train function around tfprune's own step |
| `has_default_build` | `build._is_default` | layers whose weights appear only on their first call |
| `set_class` | `model.__class__` | a subclassed model pruned in place gets a generated subclass |

TensorFlow and PyTorch internals: `is_framework_attribute` (TensorFlow's
`_self_*` checkpoint dependencies, PyTorch's `_modules`), `noinline_function`
(the `_noinline` function attribute), `trackable_root`
(`tf.__internal__.tracking.AutoTrackable`), `is_object_graph_key`
(`_CHECKPOINTABLE_OBJECT_GRAPH`) and `FLATBUFFER_SCHEMA_MODULES` (TFLite's
generated schema module).
"""

from __future__ import annotations

import contextlib

import keras

try:  # Keras keeps the class private.
    from keras.src.models.functional import Functional as _Functional
except ImportError:  # pragma: no cover - a Keras outside the pinned range
    _Functional = None
from keras.src.backend.common import stateless_scope as _stateless_scope
from keras.src.saving import object_registration as _object_registration

#: Private Keras names this module uses; no other module may.
PRIVATE_NAMES = (
    "_flatten_layers", "_functional", "_nodes_by_depth", "_keras_history", "_inbound_nodes",
    "_tracker", "_layers", "_inputs_struct", "_layout", "_direct_assign", "_call_signature",
    "_input_shape_arg", "_make_function", "_is_default", "GLOBAL_CUSTOM_NAMES",
    "_noinline", "__internal__", "_CHECKPOINTABLE",
)

#: The attribute of `vars(model)` that lists every tracked sub-layer again.
TRACKED_LAYERS_ATTR = "_layers"

#: Modules that hold TFLite's generated flatbuffer schema, in order of
#: preference (TensorFlow's is private; LiteRT ships the same file).
FLATBUFFER_SCHEMA_MODULES = (
    "tensorflow.lite.python.schema_py_generated",
    "ai_edge_litert.schema_py_generated",
)


# ---------------------------------------------------------------- models
def functional_class():
    """Keras' `Functional` class, or None where it cannot be imported."""
    return _Functional


def sequential_graph(model):
    """The Functional graph a Sequential model runs (`model` itself for a
    Functional one)."""
    return model._functional if isinstance(model, keras.Sequential) else model


def nodes_by_depth(graph) -> dict:
    """`{depth: [Node, ...]}` of a Functional graph (the inputs deepest)."""
    return graph._nodes_by_depth


def keras_history(tensor):
    """`(operation, node_index, tensor_index)` of a symbolic tensor, or None
    for a tensor that no Keras operation produced."""
    return getattr(tensor, "_keras_history", None)


def inbound_nodes(operation) -> list:
    """The `Node`s of every call of `operation` (a layer or an op)."""
    return operation._inbound_nodes


def inputs_struct(model, default=None):
    """The nested structure of a Functional model's inputs, or `default`."""
    return getattr(model, "_inputs_struct", default)


def make_train_function(model, train_step):
    """Keras' compiled train function (TensorFlow trainer) around
    `train_step(data) -> logs`, as `model.make_train_function` builds it
    around `model.train_step`."""
    return model._make_function(train_step)


def set_class(model, cls) -> None:
    """Gives `model` another class (a subclass of its own, or back)."""
    model.__class__ = cls


def register_class_name(cls, name: str) -> None:
    """Makes Keras save instances of `cls` under the registered `name`
    (which must resolve to a class whose `from_config` rebuilds them)."""
    _object_registration.GLOBAL_CUSTOM_NAMES[cls] = name


# ---------------------------------------------------------------- layers
def flatten_layers(layer, include_self: bool = True, recursive: bool = True) -> list:
    """The layers `layer` tracks, in tracking order (nested ones too when
    `recursive`)."""
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def tracked_layers(model) -> list:
    """The sub-layers a model tracks directly (Keras' `_layers`)."""
    return list(model._layers)


def replace_tracked_layer(model, old, new) -> None:
    """Makes `model`'s tracking hold `new` where it held `old`."""
    model._tracker.replace_tracked_value("layers", old, new)


@contextlib.contextmanager
def unlocked_tracker(layer):
    """Lets a built layer add variables (Keras locks its tracker once
    built), then locks it again if it was locked."""
    tracker = layer._tracker
    was_locked = tracker.locked
    tracker.unlock()
    try:
        yield
    finally:
        if was_locked:
            tracker.lock()


def has_default_build(layer) -> bool:
    """True when `layer.build` is Keras' default (its weights are created
    by the first call, not by `build`)."""
    return bool(getattr(layer.build, "_is_default", False))


def set_call_signature(layer, signature) -> None:
    """Makes Keras bind `layer`'s call arguments against `signature`."""
    layer._call_signature = signature
    layer.call_signature_parameters = list(signature.parameters)


def input_shape_arg(layer):
    """The `input_shape` a layer was constructed with (None if none)."""
    return getattr(layer, "_input_shape_arg", None)


def set_input_shape_arg(layer, value) -> None:
    """Gives `layer` the `input_shape` a Sequential reads from its first
    layer."""
    layer._input_shape_arg = value


def in_stateless_scope() -> bool:
    """Whether the current call runs inside a `keras.StatelessScope`."""
    return _stateless_scope.in_stateless_scope()


# ------------------------------------------------------------- variables
def copy_layout(source, variable) -> None:
    """Lays `variable` out like `source` under `keras.distribution` (its
    value is placed again in that layout); nothing without a layout."""
    layout = getattr(source, "_layout", None)
    if layout is None or getattr(variable, "_layout", None) is layout:
        return
    variable._layout = layout
    variable._direct_assign(variable.value)


# ------------------------------------------------- TensorFlow, PyTorch
def is_framework_attribute(name: str) -> bool:
    """Whether an entry of `vars(layer)` is bookkeeping that holds the
    layer's sub-layers again: Keras' `_layers` list and TensorFlow's
    checkpoint dependencies (`_self_...`). PyTorch's `_modules` dict is not
    one: on that backend it is where attributes holding sub-layers live."""
    return name == TRACKED_LAYERS_ATTR or name.startswith("_self_")


def torch_modules(name: str, value):
    """The `{name: module}` dict PyTorch keeps sub-layers in, when
    `vars(layer)[name]` is it; None otherwise."""
    return value if name == "_modules" and isinstance(value, dict) else None


def noinline_function(fn):
    """`tf.function(fn)` (no autograph) that TensorFlow keeps as one call
    in a caller's graph instead of inlining its ops."""
    import tensorflow as tf

    return tf.function(fn, autograph=False, experimental_attributes={"_noinline": True})


def trackable_root():
    """An empty trackable object to hang a SavedModel's functions and
    variables on (the one Keras' own exporter uses)."""
    import tensorflow as tf

    return tf.__internal__.tracking.AutoTrackable()


def is_object_graph_key(key: str) -> bool:
    """Whether a checkpoint key is TensorFlow's object-graph entry rather
    than a variable."""
    return key.startswith("_CHECKPOINTABLE")
