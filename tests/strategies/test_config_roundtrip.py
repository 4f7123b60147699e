"""Every serializable tfprune object survives serialize -> JSON -> deserialize."""

import json

import keras
import numpy as np
import pytest

import tfprune
from tfprune import schedules

L = keras.layers


def _json(config):
    return json.loads(json.dumps(config))


def _roundtrip(obj):
    config = keras.saving.serialize_keras_object(obj)
    config = _json(config)  # must be plain JSON
    return config, keras.saving.deserialize_keras_object(config)


CASES = {
    "Constant": lambda: schedules.Constant(0.6, begin_step=3),
    "PolynomialDecay": lambda: schedules.PolynomialDecay(0.1, 0.85, 2, 40, power=2),
    "PruningWrapper": lambda: tfprune.PruningWrapper(
        L.Dense(4, name="inner"), schedules.PolynomialDecay(0.0, 0.5, 0, 10), name="w"
    ),
    "PruningCallback": lambda: tfprune.PruningCallback(update_every=7, log_dir="logs/run"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_config_roundtrip(name):
    obj = CASES[name]()
    config, restored = _roundtrip(obj)
    assert config["registered_name"] == f"tfprune>{name}"
    assert type(restored) is type(obj)
    assert _json(restored.get_config()) == _json(obj.get_config())


CORE_MODULES = ("tfprune.schedules", "tfprune._training.wrapper", "tfprune._training.callback")


def test_every_registered_core_class_has_a_roundtrip_case():
    registered = {
        key.split(">", 1)[1]
        for key, obj in keras.saving.get_custom_objects().items()
        if key.startswith("tfprune>") and obj.__module__ in CORE_MODULES
    }
    assert registered == set(CASES), f"add round-trip cases for {registered - set(CASES)}"


def test_schedule_config_is_flat_init_arguments():
    s = schedules.PolynomialDecay(0.1, 0.85, 2, 40, power=2)
    assert s.get_config() == {
        "initial_sparsity": 0.1,
        "final_sparsity": 0.85,
        "begin_step": 2,
        "end_step": 40,
        "power": 2,
    }
    assert schedules.PolynomialDecay.from_config(s.get_config()) == s


def test_wrapper_roundtrip_keeps_inner_layer_schedule_and_include():
    block = keras.Sequential([keras.Input((3,)), L.Dense(4, name="a"), L.Dense(2, name="b")])
    wrapper = tfprune.PruningWrapper(block, schedules.Constant(0.5, 2), include=[[1]])
    _, restored = _roundtrip(wrapper)
    assert restored.schedule == schedules.Constant(0.5, 2)
    assert restored.include == [(1,)]
    assert _json(restored.layer.get_config()) == _json(block.get_config())
    assert restored.name == wrapper.name == "pruned_sequential"


def test_wrapper_roundtrip_with_weights_in_a_model(rng, masks_of):
    model = keras.Sequential(
        [keras.Input((5,)), tfprune.PruningWrapper(L.Dense(3), 0.5), L.Dense(1)]
    )
    wrapper = model.layers[0]
    wrapper.prune_to(0.5)
    restored = keras.Sequential.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    x = rng.random((4, 5)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    assert masks_of(restored).keys() == masks_of(model).keys()
    for a, b in zip(masks_of(restored).values(), masks_of(model).values()):
        np.testing.assert_array_equal(a, b)


def test_callback_config_defaults():
    cb = tfprune.PruningCallback()
    assert cb.get_config() == {"update_every": 100, "log_dir": None, "in_step": "auto"}
    assert tfprune.PruningCallback.from_config(cb.get_config()).get_config() == cb.get_config()
    again = tfprune.PruningCallback.from_config(
        tfprune.PruningCallback(update_every=3, in_step=False).get_config())
    assert (again.update_every, again.in_step) == (3, False)


def test_wrapper_roundtrip_keeps_its_strategy():
    from tfprune import criteria
    from tfprune import granularity
    from tfprune import strategies

    strategy = strategies.Strategy(
        "taylor", granularity.Block((4, 1)), strategies.Global(normalize="l2"),
        protect=["emb*"], regularizer=criteria.L1Regularizer(0.01),
    )
    wrapper = tfprune.PruningWrapper(L.Dense(4), 0.5, strategy=strategy)
    config, restored = _roundtrip(wrapper)
    assert config["config"]["strategy"]["registered_name"] == "tfprune>Strategy"
    assert restored.strategy == strategy
    _, preset = _roundtrip(tfprune.PruningWrapper(L.Dense(4), 0.5, strategy="regression"))
    assert preset.strategy == strategies.regression()
    # Configs written before wrappers had a strategy load with the default.
    old = tfprune.PruningWrapper(L.Dense(4), 0.5).get_config()
    old["layer"] = keras.saving.serialize_keras_object(L.Dense(4))
    del old["strategy"]
    assert tfprune.PruningWrapper.from_config(old).strategy == strategies.Strategy()
