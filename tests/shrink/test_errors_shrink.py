"""Bad arguments to `tfprune.shrink` and `register_surgery`."""

import keras
import pytest

from tfprune._base.channel_rules import _RULES
from tfprune._shrink import register_surgery
from tfprune import shrink
from tfprune._shrink._surgery import Identity

L = keras.layers


def test_a_model_that_is_not_built_cannot_be_shrunk():
    model = keras.Sequential([L.Dense(3), L.Dense(1)], name="unbuilt")
    message = r"must be built with known inputs.*Received: model=unbuilt \(not built\)$"
    with pytest.raises(ValueError, match=message):
        shrink(model)


@pytest.mark.parametrize("layer_class", [dict, L.Dense(2), "Dense"], ids=["class", "instance", "name"])
def test_register_surgery_needs_a_layer_class(layer_class):
    before = list(_RULES)
    message = r"^`layer_class` must be a subclass of `keras.layers.Layer`\. Received: layer_class="
    with pytest.raises(TypeError, match=message):
        register_surgery(layer_class, Identity())
    assert _RULES == before
