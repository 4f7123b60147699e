"""Keras internals live in one module, and work on the installed Keras.

`tfprune/_base/keras_internals.py` holds every access to a private Keras (or
TensorFlow) name and every `keras.src` import; the scan below fails when
another module reaches one itself. The rest of the file runs each function
of that module against the installed Keras, so a release that moves an
internal fails here (`make test-keras-range` runs this file against the
oldest Keras of the range `setup.cfg` pins).
"""

import ast
import configparser
import inspect
import pathlib
import warnings

import keras
import numpy as np
import pytest
from packaging.requirements import Requirement

from tfprune._base import keras_internals as ki

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tfprune"
MODULE = PACKAGE / "_base" / "keras_internals.py"
ATTRIBUTE_FUNCTIONS = ("getattr", "hasattr", "setattr", "delattr")


def _offences(path: pathlib.Path) -> list:
    names = set(ki.PRIVATE_NAMES)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"{where}: from {node.module} import ...")
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names
                      if a.name.startswith("keras.src")]
        if isinstance(node, ast.Attribute) and node.attr in names:
            found.append(f"{where}: .{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ATTRIBUTE_FUNCTIONS:
            found += [f"{where}: {node.func.id}(..., {a.value!r})" for a in node.args
                      if isinstance(a, ast.Constant) and a.value in names]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                node.value in names or node.value.startswith("keras.src")):
            found.append(f"{where}: {node.value!r}")
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found += [f"{where}: .__class__ assigned" for t in targets
                      if isinstance(t, ast.Attribute) and t.attr == "__class__"]
    return found


def test_no_module_but_the_internals_module_touches_keras_internals():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != MODULE:
            offences += _offences(path)
    assert not offences, "\n".join(offences)


def test_the_internals_module_uses_every_name_it_lists():
    found = " ".join(_offences(MODULE))
    for name in ki.PRIVATE_NAMES:
        assert name in found, name
    assert "keras.src" in found and "__class__ assigned" in found


def test_the_installed_keras_is_in_the_pinned_range():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].split("\n")
    requirement = next(Requirement(line) for line in lines
                       if line.strip().startswith("keras") and not line.strip().startswith("#"))
    assert requirement.specifier, "setup.cfg pins no Keras range"
    assert requirement.specifier.contains(keras.__version__), keras.__version__


# ------------------------------------------------------- against Keras
def _functional():
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="out")(hidden)
    return keras.Model(inputs, outputs)


def test_graph_internals_on_a_functional_and_a_sequential_model():
    model = _functional()
    assert ki.functional_class() is type(model)
    assert [layer.name for layer in ki.flatten_layers(model, include_self=False)] == [
        "x", "hidden", "out"]
    by_depth = ki.nodes_by_depth(model)
    ops = [node.operation.name for depth in sorted(by_depth, reverse=True)
           for node in by_depth[depth] if not node.is_input]
    assert ops == ["hidden", "out"]
    op, node_index, _ = ki.keras_history(model.outputs[0])
    assert op.name == "out" and node_index == 0
    assert ki.keras_history(np.zeros(2)) is None
    assert len(ki.inbound_nodes(op)) == 1
    assert ki.inbound_nodes(op)[0].input_tensors[0] is model.layers[1].output
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert isinstance(ki.sequential_graph(sequential), ki.functional_class())
    assert ki.sequential_graph(model) is model
    inputs = {"b": keras.Input((2,), name="b"), "a": keras.Input((3,), name="a")}
    merged = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    dict_model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    assert set(ki.inputs_struct(dict_model)) == {"a", "b"}
    assert ki.inputs_struct(object(), "default") == "default"


class _Block(keras.Model):
    def __init__(self):
        super().__init__()
        self.first = keras.layers.Dense(3)
        self.second = keras.layers.Dense(2)

    def call(self, x):
        return self.second(self.first(x))


def test_tracking_internals_on_a_subclassed_model():
    block = _Block()
    block(np.zeros((1, 4), "float32"))
    assert [id(layer) for layer in ki.tracked_layers(block)] == [id(block.first),
                                                                 id(block.second)]
    new = keras.layers.Dense(3)
    ki.replace_tracked_layer(block, block.first, new)
    assert any(layer is new for layer in ki.tracked_layers(block))
    assert ki.TRACKED_LAYERS_ATTR in vars(block) and ki.is_framework_attribute(
        ki.TRACKED_LAYERS_ATTR)
    assert not ki.is_framework_attribute("first")
    assert ki.torch_modules("first", {}) is None and ki.torch_modules("_modules", {}) == {}
    layer = block.second
    with pytest.raises(Exception):  # a built layer's tracker is locked
        layer.add_weight(shape=(1,), name="extra")
    with ki.unlocked_tracker(layer):
        extra = layer.add_weight(shape=(1,), name="extra")
    assert any(v is extra for v in layer.weights)
    with pytest.raises(Exception):  # locked again
        layer.add_weight(shape=(1,), name="again")


def test_layer_internals():
    class Lazy(keras.layers.Layer):
        def call(self, x):
            return x

    assert ki.has_default_build(Lazy()) and not ki.has_default_build(keras.layers.Dense(2))
    with warnings.catch_warnings():  # Keras discourages `input_shape=`, tfmot programs use it
        warnings.simplefilter("ignore", UserWarning)
        dense = keras.layers.Dense(2, input_shape=(3,))
    assert tuple(ki.input_shape_arg(dense)) == (3,)
    other = keras.layers.Dense(2)
    ki.set_input_shape_arg(other, (5,))
    assert keras.Sequential([other]).built  # Sequential builds from its first layer's shape
    wrapper = keras.layers.Dense(2)

    def call(inputs, scale=1.0, training=None):
        return inputs

    ki.set_call_signature(wrapper, inspect.signature(call))
    assert wrapper.call_signature_parameters == ["inputs", "scale", "training"]
    assert not ki.in_stateless_scope()
    with keras.StatelessScope():
        assert ki.in_stateless_scope()


def test_model_class_and_registration_internals():
    class Pruned(_Block):
        pass

    block = _Block()
    ki.set_class(block, Pruned)
    assert type(block) is Pruned
    ki.register_class_name(Pruned, "tfprune>Probe")
    assert keras.saving.get_registered_name(Pruned) == "tfprune>Probe"
    source, variable = keras.Variable(np.zeros(3, "float32")), keras.Variable(np.ones(3, "float32"))
    ki.copy_layout(source, variable)  # no layout: nothing to copy
    assert getattr(variable, "_layout", None) is None  # Keras 3.12 sets none at all
    layout = object()  # what keras.distribution would set
    source._layout = layout
    ki.copy_layout(source, variable)
    assert variable._layout is layout  # the value placed again, unchanged
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), np.ones(3))


@pytest.mark.tensorflow_only
def test_tensorflow_internals():
    import importlib

    import tensorflow as tf

    model = _functional()
    model.compile("sgd", "mse")

    def step(data):
        return model.train_step(data)

    train = ki.make_train_function(model, step)
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.ones((4, 4), "float32"), np.zeros((4, 2), "float32"))).batch(2)
    logs = train(iter(dataset))
    assert "loss" in logs and int(model.optimizer.iterations.numpy()) == 1
    double = ki.noinline_function(lambda x: x * 2)
    assert float(double(tf.constant(2.0))) == 4.0
    root = ki.trackable_root()
    root.value = tf.Variable(1.0)
    assert ki.is_object_graph_key("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert not ki.is_object_graph_key("value/.ATTRIBUTES/VARIABLE_VALUE")
    schema = None
    for name in ki.FLATBUFFER_SCHEMA_MODULES:
        try:
            schema = importlib.import_module(name)
            break
        except ImportError:
            continue
    assert schema is not None and hasattr(schema, "ModelT")
