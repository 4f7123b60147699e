"""One registration teaches unit grouping (`Units`) and `tfprune.shrink`.

The channel rules of `tfprune._base.channel_rules` are the one registry both
read: `register_surgery` adds a layer class to it once.
"""

import contextlib

import keras
import numpy as np
import pytest

from tfprune import shrink
from tfprune import strategies
from tfprune._base import channel_rules
from tfprune._base import walk
from tfprune._base.channels import channel_dependencies
from tfprune._shrink import register_surgery
from tfprune._shrink._surgery import Identity
from tfprune._shrink._surgery import surgery_for

L = keras.layers


class Probe(L.Layer):
    """A custom layer that passes its channels through (e.g. to log them)."""

    def call(self, x):
        return x


@contextlib.contextmanager
def registered(layer_class, entry, register=register_surgery):
    register(layer_class, entry)
    try:
        yield
    finally:
        assert channel_rules._RULES.pop(0) == (layer_class, entry)


def _model():
    """a + Probe(b) -> head: unit j of `a` and of `b` is one channel."""
    x = keras.Input((6,))
    a = L.Dense(4, name="a")(x)
    b = Probe(name="probe")(L.Dense(4, name="b")(x))
    return keras.Model(x, L.Dense(2, name="head")(L.Add()([a, b])))


def _groups(model):
    weights = walk.prunable_weights(model)
    return {tuple(sorted(weights[s.tensor].layer.name for s in g.slices))
            for g in strategies.unit_groups(weights, model)}


def _units_pruned(model, sparsity=0.5):
    """Applies the `Units` masks to the weights, as `strip` would bake them."""
    plan = strategies.dense(units=True, protect=["head"]).plan(model)
    for pw, mask in zip(plan.weights, plan.compute_masks(sparsity)):
        pw.variable.assign(np.asarray(pw.variable) * np.asarray(mask))
    return {pw.layer.name: np.any(np.asarray(pw.variable) != 0, axis=0) for pw in plan.weights}


def _max_error(model, small):
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    return float(np.max(np.abs(np.asarray(model(x)) - np.asarray(small(x)))))


def test_an_unregistered_layer_pins_its_channels_for_grouping_and_shrink():
    keras.utils.set_random_seed(0)
    model = _model()
    deps = channel_dependencies(model)
    b = walk.unwrap(model.get_layer("b"))
    assert deps.pinned(deps.units[id(b)]).all()
    assert _groups(model) == {("a",), ("b",), ("head",)}
    _units_pruned(model)  # each decides alone ...
    assert shrink(model).count_params() == model.count_params()  # ... and nothing can go


def test_one_registration_couples_the_units_and_lets_shrink_remove_them():
    keras.utils.set_random_seed(0)
    model = _model()
    with registered(Probe, Identity()):
        deps = channel_dependencies(model)
        a, b = (deps.units[id(model.get_layer(n))] for n in "ab")
        np.testing.assert_array_equal(deps.roots(a), deps.roots(b))
        assert not deps.pinned(a).any()
        assert _groups(model) == {("a", "b"), ("head",)}
        kept = _units_pruned(model)
        np.testing.assert_array_equal(kept["a"], kept["b"])  # one decision per channel
        assert kept["a"].sum() == 2
        small = shrink(model)
    assert small.get_layer("a").units == small.get_layer("b").units == 2
    assert small.get_layer("head").kernel.shape == (2, 2)
    assert _max_error(model, small) <= 1e-5


def test_a_rule_without_surgery_guides_grouping_but_shrink_keeps_the_layer():
    model = _model()
    rule = channel_rules.Passes()
    with registered(Probe, rule, channel_rules.register_channel_rule):
        assert _groups(model) == {("a", "b"), ("head",)}
        assert surgery_for(model.get_layer("probe")).rule is channel_rules.UNKNOWN
        _units_pruned(model)
        assert shrink(model).count_params() == model.count_params()


@pytest.mark.parametrize("name,rule", [
    ("Dropout", channel_rules.IDENTITY), ("BatchNormalization", channel_rules.BATCH_NORMALIZATION),
    ("Conv2D", channel_rules.CONV), ("LSTM", channel_rules.RECURRENT),
])
def test_built_in_layers_have_one_rule_and_shrink_extends_it(name, rule):
    layer = getattr(L, name)(**({"rate": 0.1} if name == "Dropout" else
                                {"units": 2} if name == "LSTM" else
                                {"filters": 2, "kernel_size": 1} if name == "Conv2D" else {}))
    assert channel_rules.channel_rule_for(layer) is rule
    assert surgery_for(layer).rule is rule
