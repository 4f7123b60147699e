"""The keys of a model's masked tensors (`state.unique_keys`, `state.key_slots`)."""

import keras

import tfprune
from tfprune import find_wrappers
from tfprune._training import state

L = keras.layers


def test_unique_keys_are_the_paths_with_repeats_numbered_in_order():
    paths = ["a/kernel", "b/kernel", "a/kernel", "a/kernel", "b/kernel"]
    assert state.unique_keys(paths) == [
        "a/kernel", "b/kernel", "a/kernel#2", "a/kernel#3", "b/kernel#2"]
    assert state.unique_keys(paths) == state.unique_keys(list(paths))  # deterministic
    assert state.unique_keys([]) == []


def test_unique_keys_never_take_a_path_that_is_given():
    keys = state.unique_keys(["a#2", "a", "a"])
    assert keys == ["a#2", "a", "a#3"]
    assert len(set(keys)) == len(keys)


def _built_alone(name):
    layer = L.Dense(4, name=name)
    layer.build((None, 8))  # outside any model: the kernel's path is "<name>/kernel"
    return layer


def test_key_slots_keys_each_masked_tensor_by_its_variable_path():
    model = keras.Sequential([keras.Input((8,)), L.Dense(4, name="hidden"),
                              L.Dense(2, name="head")], name="mlp")
    pruned = tfprune.prune(model, 0.5)
    slots = [s for w in find_wrappers(pruned) for s in w.slots]
    # A wrapper keys its slots when it creates them; paths are unique here.
    assert [s.key for s in slots] == [s.weight.variable.path for s in slots]
    keyed = state.key_slots(slots)
    assert list(keyed) == ["mlp/hidden/kernel", "mlp/head/kernel"]
    assert list(keyed.values()) == slots


def test_key_slots_numbers_a_repeated_path_in_model_order():
    a, b = _built_alone("proj"), _built_alone("proj")
    assert a.kernel.path == b.kernel.path == "proj/kernel"
    wrappers = [tfprune.PruningWrapper(layer, 0.5) for layer in (a, b)]
    for wrapper in wrappers:
        wrapper.build((None, 8))
    slots = [s for w in wrappers for s in w.slots]
    assert [s.key for s in slots] == ["proj/kernel", "proj/kernel"]  # each its wrapper's
    keyed = state.key_slots(slots)
    assert list(keyed) == ["proj/kernel", "proj/kernel#2"]
    assert [s.key for s in slots] == ["proj/kernel", "proj/kernel#2"]
    assert keyed["proj/kernel#2"].weight.variable is b.kernel
    state.key_slots(slots)  # again: the same keys
    assert [s.key for s in slots] == ["proj/kernel", "proj/kernel#2"]
    # Zero counts are keyed the same way.
    assert list(state.count_zeros(wrappers)) == ["proj/kernel", "proj/kernel#2"]


def test_a_slot_is_keyed_by_its_variable_path_by_default():
    layer = _built_alone("dense")
    pw = tfprune.PruningWrapper(layer, 0.5)
    pw.build((None, 8))
    slot = state.Slot(pw.pruned_weights[0], pw.masks[0])
    assert slot.key == "dense/kernel"
