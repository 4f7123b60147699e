"""Subclassed models: wrapped in place, stripped in place, saved and loaded."""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import PruningWrapper
from tfprune import find_wrappers

L = keras.layers


class Net(keras.Model):
    """Sub-layers as attributes, in a list, in a dict and in a nested model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = L.Dense(8, activation="tanh", name="stem")
        self.blocks = [L.Dense(8, name="block0"), L.Dense(8, name="block1")]
        self.heads = {"main": L.Dense(2, name="main")}
        self.norm = L.LayerNormalization(name="norm")
        self.tower = keras.Sequential([keras.Input((8,)), L.Dense(8, name="tower_dense")], name="tower")

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.heads["main"](self.norm(self.tower(x)))


def _layers_of(net):
    return [net.stem, *net.blocks, net.heads["main"], net.norm]


@pytest.fixture
def net(rng):
    net = Net(name="net")
    net(rng.random((1, 5)).astype("float32"))
    return net


def test_prune_wraps_sub_layers_in_place_and_strip_restores_them(net, rng, check_pruned):
    x = rng.random((32, 5)).astype("float32")
    before = net.predict(x, verbose=0)
    originals = _layers_of(net)

    pruned = tfprune.prune(net, 0.5)
    assert pruned is net
    types = [type(layer) for layer in _layers_of(net)]
    assert types == [PruningWrapper] * 4 + [L.LayerNormalization]
    assert [w.layer for w in _layers_of(net)[:4]] == originals[:4]
    assert isinstance(net.tower, keras.Sequential) and find_wrappers(net.tower)
    assert len(find_wrappers(net)) == 5
    # Masks start dense: nothing changes until the callback prunes.
    np.testing.assert_allclose(net.predict(x, verbose=0), before, rtol=1e-6)

    net.compile("adam", "mse")
    net.fit(x, x[:, :2], batch_size=8, epochs=2, verbose=0, callbacks=[tfprune.PruningCallback()])
    check_pruned(net, 0.5)
    trained = net.predict(x, verbose=0)
    report = tfprune.sparsity_report(net)

    stripped = tfprune.strip(net)
    assert stripped is net
    assert [type(layer) for layer in _layers_of(net)] == [type(layer) for layer in originals]
    assert _layers_of(net) == originals
    assert not any(isinstance(layer, PruningWrapper) for layer in net._flatten_layers())
    np.testing.assert_allclose(net.predict(x, verbose=0), trained, rtol=1e-5, atol=1e-6)
    assert tfprune.sparsity_report(net).to_dict()["tensors"] == report.to_dict()["tensors"]
    assert report.sparsity == pytest.approx(0.5)
    # Pruned variables keep their constraint-free state after strip.
    assert net.stem.kernel.constraint is None


def test_prune_selects_layers_of_a_subclassed_model(net, rng):
    tfprune.prune(net, 0.5, layers=["block1", "main"])
    assert [type(layer).__name__ for layer in _layers_of(net)] == [
        "Dense", "Dense", "PruningWrapper", "PruningWrapper", "LayerNormalization"
    ]
    assert not find_wrappers(net.tower)


@keras.saving.register_keras_serializable("tfprune_tests")
class SelfPruning(keras.Model):
    """Builds its own `PruningWrapper`s in `__init__`."""

    def __init__(self, units=8, sparsity=0.5, **kwargs):
        super().__init__(**kwargs)
        self.units, self.sparsity = units, sparsity
        self.hidden = tfprune.PruningWrapper(L.Dense(units, activation="relu", name="hidden"), sparsity)
        self.out = tfprune.PruningWrapper(L.Dense(1, name="out"), sparsity)

    def call(self, x):
        return self.out(self.hidden(x))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "sparsity": self.sparsity}


def test_subclassed_model_with_its_own_wrappers_trains_saves_and_loads(
    rng, tmp_path, check_pruned, masks_of
):
    model = SelfPruning(sparsity=tfprune.schedules.Constant(0.75))
    x = rng.random((32, 4)).astype("float32")
    model(x[:1])
    model.compile("adam", "mse")
    model.fit(x, x[:, :1], batch_size=8, verbose=0, callbacks=[tfprune.PruningCallback()])
    check_pruned(model, 0.75)

    model.save(tmp_path / "self.keras")
    loaded = keras.saving.load_model(tmp_path / "self.keras")
    assert type(loaded) is SelfPruning
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for a, b in zip(masks_of(loaded).values(), masks_of(model).values()):
        np.testing.assert_array_equal(a, b)
    assert loaded.hidden.schedule == tfprune.schedules.Constant(0.75)
    assert int(loaded.optimizer.iterations.numpy()) == 4

    loaded.fit(x, x[:, :1], batch_size=8, verbose=0, callbacks=[tfprune.PruningCallback()])
    check_pruned(loaded, 0.75)
    before = loaded.predict(x, verbose=0)
    stripped = tfprune.strip(loaded)
    assert not find_wrappers(stripped)
    assert type(stripped.hidden) is L.Dense
    np.testing.assert_allclose(stripped.predict(x, verbose=0), before, rtol=1e-6)


def test_prune_a_single_built_layer(rng):
    dense = L.Dense(4, name="solo")
    dense.build((None, 3))
    wrapper = tfprune.prune(dense, 0.5)
    assert isinstance(wrapper, PruningWrapper) and wrapper.layer is dense
    # Built with its masks, ready for the callback before any call.
    assert wrapper.built and wrapper.pruning_step is not None
    wrapper.prune_to(0.5)
    assert int((wrapper.masks[0].numpy() == 0).sum()) == 6
    x = rng.random((2, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(wrapper(x)),
                               x @ (dense.kernel.numpy() * wrapper.masks[0].numpy()), rtol=1e-6)


# A subclassed model in a module of its own, so that a fresh process can
# import it: the class is registered, nothing else is given to the loader.
_MODULE = '''
import keras

L = keras.layers


@keras.saving.register_keras_serializable("tfprune_tests_subclassed")
class Block(keras.Model):
    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.inner = L.Dense(width, activation="relu", name="inner")

    def call(self, x):
        return x + self.inner(x)

    def get_config(self):
        return {**super().get_config(), "width": self.width}


@keras.saving.register_keras_serializable("tfprune_tests_subclassed")
class SavedNet(keras.Model):
    """Sub-layers as an attribute, in a list, in a dict, in a nested
    Sequential and in a nested subclassed block; one left dense."""

    def __init__(self, width=8, **kwargs):
        super().__init__(**kwargs)
        self.width = width
        self.stem = L.Dense(width, activation="tanh", name="stem")
        self.blocks = [L.Dense(width, name="block0"), L.Dense(width, name="block1")]
        self.heads = {"main": L.Dense(2, name="main")}
        self.tower = keras.Sequential(
            [keras.Input((width,)), L.Dense(width, name="tower_dense")], name="tower")
        self.block = Block(width, name="block")
        self.norm = L.LayerNormalization(name="norm")

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        return self.heads["main"](self.norm(self.block(self.tower(x))))

    def get_config(self):
        return {**super().get_config(), "width": self.width}
'''


def test_subclassed_model_pruned_in_place_saves_and_loads_pruned_in_a_fresh_process(
    rng, tmp_path, masks_of, run_python, monkeypatch
):
    (tmp_path / "saved_net.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import saved_net

    net = saved_net.SavedNet(name="net")
    x = rng.random((40, 5)).astype("float32")
    y = rng.random((40, 2)).astype("float32")
    net(x[:1])
    schedule = tfprune.schedules.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=20, power=1)
    pruned = tfprune.prune(net, schedule, layers=lambda layer: layer.name != "block1")
    assert pruned is net and isinstance(net, saved_net.SavedNet)
    assert type(net).__name__ == "SavedNet"
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(x, y, batch_size=4, epochs=1, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=4)])  # 10 steps: mid-schedule
    masks = masks_of(pruned)
    assert sorted(masks) == ["block0/kernel", "inner/kernel", "main/kernel", "stem/kernel",
                             "tower_dense/kernel"]
    assert 0 < np.mean([1 - m.mean() for m in masks.values()]) < 0.75
    pruned.save(tmp_path / "pruned.keras")
    np.savez(tmp_path / "expected.npz", x=x, y=y, out=pruned.predict(x, verbose=0),
             **{name.replace("/", "|"): m for name, m in masks.items()})

    result = run_python(
        f"""
        import keras, numpy as np
        import tfprune
        import saved_net
        from tfprune import find_wrappers

        data = np.load("expected.npz")
        model = keras.saving.load_model("pruned.keras")
        wrappers = find_wrappers(model)
        masks = {{pw.name.replace("/", "|"): m.numpy()
                 for w in wrappers for pw, m in zip(w.pruned_weights, w.masks)}}
        loaded = {{
            "class": type(model).__name__,
            "is_user_class": isinstance(model, saved_net.SavedNet),
            "wrapped": sorted(type(v).__name__ + ":" + k for k, v in [
                ("stem", model.stem), ("block0", model.blocks[0]),
                ("block1", model.blocks[1]), ("main", model.heads["main"]),
                ("inner", model.block.inner), ("norm", model.norm)]),
            "tower": [type(l).__name__ for l in model.tower.layers],
            "masks": sorted(masks) == sorted(k for k in data.files if "|" in k),
            "masks_equal": all(np.array_equal(masks[k], data[k]) for k in masks),
            "out_equal": bool(np.array_equal(model.predict(data["x"], verbose=0), data["out"])),
            "iterations": int(model.optimizer.iterations.numpy()),
            "steps": sorted({{int(w.pruning_step.numpy()) for w in wrappers}}),
        }}
        model.fit(data["x"], data["y"], batch_size=4, epochs=1, verbose=0,
                  callbacks=[tfprune.PruningCallback(update_every=4)])
        final = tfprune.sparsity_report(model).to_dict()
        resaved = "resaved.keras"
        model.save(resaved)
        again = keras.saving.load_model(resaved)
        stripped = tfprune.strip(again)
        json.dump({{
            "loaded": loaded,
            "final": final,
            "stripped_class": type(stripped) is saved_net.SavedNet,
            "stripped_wrappers": len(find_wrappers(stripped)),
        }}, open(RESULT, "w"))
        """
    )
    loaded = result["loaded"]
    assert loaded["class"] == "SavedNet" and loaded["is_user_class"]
    assert loaded["wrapped"] == ["Dense:block1", "LayerNormalization:norm", "PruningWrapper:block0",
                                 "PruningWrapper:inner", "PruningWrapper:main",
                                 "PruningWrapper:stem"]
    assert loaded["tower"] == ["PruningWrapper"]
    assert loaded["masks"] and loaded["masks_equal"] and loaded["out_equal"]
    assert loaded["iterations"] == 10
    assert loaded["steps"] == [8]
    # Training goes on in the new process and ends on schedule.
    tensors = {f"{t['layer']}/{t['weight']}": t for t in result["final"]["tensors"]}
    assert tensors["stem/kernel"]["zeros"] == round(40 * 0.75)
    assert tensors["main/kernel"]["zeros"] == round(16 * 0.75)
    assert tensors["block1/kernel"]["zeros"] == 0
    assert result["stripped_class"] and result["stripped_wrappers"] == 0


def test_loading_a_pruned_subclassed_model_whose_class_no_longer_has_the_layer(net):
    tfprune.prune(net, 0.5)
    config = net.get_config()
    paths = [e["path"] for e in config["wrappers"]]
    assert ["stem"] in paths and ["blocks", 0] in paths
    config["wrappers"][paths.index(["stem"])]["path"] = ["gone"]
    with pytest.raises(ValueError, match=r"its class no longer creates .*Received: model=net$"):
        type(net).from_config(config, custom_objects={"Net": Net})


@keras.saving.register_keras_serializable("tfprune_tests_nested")
class InnerBlock(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a, self.b = keras.layers.Dense(8), keras.layers.Dense(8)

    def call(self, x):
        return self.b(self.a(x))


def _functional_block():
    inputs = keras.Input((8,))
    return keras.Model(inputs, keras.layers.Dense(8)(keras.layers.Dense(8)(inputs)))


_BLOCKS = {  # sub-layers created without names: new names each time
    "sequential": lambda: keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(8)]),
    "nested_sequential": lambda: keras.Sequential(
        [keras.layers.Dense(8), keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(8)])]),
    "functional": _functional_block,
    "subclassed": lambda: InnerBlock(),
    "list": lambda: [keras.layers.Dense(8), keras.layers.Dense(8)],
    "dict": lambda: {"first": keras.layers.Dense(8), "second": keras.layers.Dense(8)},
}


@keras.saving.register_keras_serializable("tfprune_tests_nested")
class BlockHolder(keras.Model):
    def __init__(self, kind, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.d1 = keras.layers.Dense(8)
        self.block = _BLOCKS[kind]()
        self.head = keras.layers.Dense(1)

    def call(self, x):
        x = self.d1(x)
        if isinstance(self.block, list):
            for layer in self.block:
                x = layer(x)
        elif isinstance(self.block, dict):
            x = self.block["second"](self.block["first"](x))
        else:
            x = self.block(x)
        return self.head(x)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}


@pytest.mark.parametrize("kind", sorted(_BLOCKS))
def test_pruned_in_place_with_sub_blocks_saves_and_loads(kind, rng, tmp_path):
    # A subclassed model holding a Sequential of unnamed layers did not load:
    # its wrappers were saved under layer names a new build no longer has.
    x = rng.random((32, 4)).astype("float32")
    y = rng.random((32, 1)).astype("float32")
    model = BlockHolder(kind)
    model(x[:1])
    pruned = tfprune.prune(model, 0.75)
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tfprune.PruningCallback()])
    pruned.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    def masks(m):
        return sorted(np.asarray(mask).tobytes() for w in find_wrappers(m) for mask in w.masks)

    assert len(find_wrappers(pruned)) >= 3
    assert masks(loaded) == masks(pruned)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))


class TwinBlock(keras.layers.Layer):
    """A block holding a Dense layer named "proj"; `alone` builds it at
    once, outside any model's name scope, so every such kernel has the
    variable path "proj/kernel"."""

    def __init__(self, units, alone, **kwargs):
        super().__init__(**kwargs)
        self.proj = L.Dense(units, name="proj")
        if alone:
            self.proj.build((None, 8))

    def call(self, x):
        return self.proj(x)


class TwinNet(keras.Model):
    """Two sub-blocks, each with a layer the user named "proj", of
    different widths (so their zero counts differ at every sparsity)."""

    def __init__(self, alone, block_name=None, **kwargs):
        super().__init__(**kwargs)
        self.a = TwinBlock(16, alone, name=block_name)
        self.b = TwinBlock(4, alone, name=block_name)
        self.head = L.Dense(1, name="head")

    def call(self, x):
        return self.head(keras.ops.concatenate([self.a(x), self.b(x)], axis=-1))


class WeightSparsity(keras.callbacks.Callback):
    """After each epoch: `logs["sparsity"]` and the sparsity counted in the
    pruned weights themselves. Put it after the `PruningCallback`."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        total = zeros = 0
        for wrapper in find_wrappers(self.model):
            for value in wrapper.masked_values():
                value = keras.ops.convert_to_numpy(value)
                total += value.size
                zeros += int(value.size - np.count_nonzero(value))
        self.rows.append((logs["sparsity"], zeros / total))


@pytest.mark.parametrize("in_step", [False, pytest.param(True, marks=pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="PyTorch updates between steps"))])
@pytest.mark.parametrize("alone,block_name", [(False, None), (True, None), (False, "twin")],
                         ids=["paths_differ", "paths_repeat", "block_names_repeat"])
def test_layers_of_one_name_in_two_blocks_keep_their_own_zero_counts(alone, block_name,
                                                                     in_step, rng):
    # "block_names_repeat": both blocks named "twin" by the user, so every
    # path of one repeats in the other (the plan numbers its groups too).
    net = TwinNet(alone, block_name, name="net")
    net(np.zeros((1, 8), "float32"))
    pruned = tfprune.prune(net, tfprune.schedules.PolynomialDecay(0.0, 0.75, 0, 20, power=1))
    slots = [s for w in find_wrappers(pruned) for s in w.slots]
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    x = rng.random((48, 8)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    callback = tfprune.PruningCallback(update_every=2, in_step=in_step)
    recorder = WeightSparsity()
    history = pruned.fit(x, y, batch_size=4, epochs=3, verbose=0, shuffle=False,
                         callbacks=[callback, recorder])
    keys = [s.key for s in slots]
    if alone:
        assert keys == ["proj/kernel", "proj/kernel#2", "net/head/kernel"]
    elif block_name:
        assert keys == ["net/twin/proj/kernel", "net/twin/proj/kernel#2", "net/head/kernel"]
    else:
        assert keys == ["net/twin_block/proj/kernel", "net/twin_block_1/proj/kernel",
                        "net/head/kernel"]
    # Epochs end at steps 12, 24, 36: the first mid-schedule (a zero count
    # of one kernel taken for the other's would show), the last at 0.75.
    logged, counted = zip(*recorder.rows)
    assert list(logged) == list(counted) == history.history["sparsity"]
    assert 0 < counted[0] < counted[-1] == callback.sparsity
    report = tfprune.sparsity_report(pruned)
    assert report.sparsity == callback.sparsity
    # Both "proj" kernels were updated, each to its own count.
    assert [row["zeros"] for row in report.rows] == [round(128 * 0.75), round(32 * 0.75),
                                                     round(20 * 0.75)]
