"""Functional graphs of every shape Keras can build: prune -> fit -> strip -> save.

Each case builds a small Functional model with one graph feature (bare
`keras.ops` operations, a `Lambda`, a shared layer, nested models, several
inputs and outputs, dict inputs, an embedding that is also the output
projection) and runs it through the whole life cycle:
the pruned kernels end exactly at the schedule's sparsity, `strip` keeps the
predictions, and both models survive a `.keras` round trip.
"""

import keras
import numpy as np
import pytest

import tfprune
from tfprune import find_wrappers

L = keras.layers
FINAL = 0.8
STEPS = 12  # updates every 2 steps; the schedule ends at step 8
BATCH = 4


def _operations():
    """Operators, slicing and `keras.ops` calls written inline."""
    x = keras.Input((6,), name="x")
    a = L.Dense(8, name="a")(x)
    b = L.Dense(8, name="b")(x)
    h = keras.ops.relu(a + b) * keras.ops.mean(a, axis=-1, keepdims=True)
    h = keras.ops.concatenate([h[:, :5], h[:, 0:1] - 1.0], axis=-1)
    return keras.Model(x, L.Dense(2, name="head")(h), name="operations")


def _lambda():
    x = keras.Input((6,), name="x")
    # Keras reloads a lambda without its module's globals: no `keras.` in it.
    h = L.Lambda(lambda t: t * t + 1.0, name="square")(L.Dense(5, name="a")(x))
    return keras.Model(x, L.Dense(1, name="head")(h), name="lambda")


def _masked_embedding():
    """`mask_zero=True` adds a bare `NotEqual` operation to the graph."""
    x = keras.Input((7,), dtype="int32", name="x")
    h = L.Embedding(12, 5, mask_zero=True, name="embedding")(x)
    h = L.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(x, L.Dense(1, name="head")(h), name="masked_embedding")


def _shared_layer():
    """One layer called on two inputs, another called twice in a row."""
    x1, x2 = keras.Input((6,), name="x1"), keras.Input((6,), name="x2")
    shared = L.Dense(6, activation="tanh", name="shared")
    twice = L.Dense(6, activation="tanh", name="twice")
    h = twice(twice(shared(x1) - shared(x2)))
    return keras.Model([x1, x2], L.Dense(1, name="head")(h), name="shared_layer")


def _nested():
    """A Sequential and a Functional model inside, the latter called twice."""
    inner_x = keras.Input((5,), name="inner_x")
    inner = keras.Model(
        inner_x, L.Dense(5, activation="relu", name="inner_dense")(inner_x) + inner_x,
        name="inner",
    )
    stem = keras.Sequential([keras.Input((6,)), L.Dense(5, name="stem_dense")], name="stem")
    x = keras.Input((6,), name="x")
    h = inner(inner(stem(x)))
    return keras.Model(x, L.Dense(1, name="head")(h), name="nested")


def _multi_io():
    x1, x2 = keras.Input((6,), name="x1"), keras.Input((3,), name="x2")
    h = L.Concatenate(name="join")([L.Dense(7, name="a")(x1), x2])
    out1 = L.Dense(1, name="out1")(h)
    out2 = L.Dense(2, name="out2")(h[:, 1:])
    return keras.Model([x1, x2], [out1, out2], name="multi_io")


def _dict_inputs():
    inputs = {
        "num": keras.Input((6,), name="num"),
        "tok": keras.Input((4,), dtype="int32", name="tok"),
    }
    tok = keras.ops.sum(L.Embedding(9, 3, name="embedding")(inputs["tok"]), axis=1)
    h = L.Dense(5, name="a")(inputs["num"]) + L.Dense(5, name="b")(tok)
    outputs = {"score": L.Dense(1, name="score")(h), "logits": L.Dense(3, name="logits")(h)}
    return keras.Model(inputs, outputs, name="dict_inputs")


def _reversible_embeddings():
    """Two ReversibleEmbeddings, each called twice: the token lookup and,
    with `reverse=True`, the output projection. The tied one uses its one
    `embeddings` both ways; the untied one projects with `reverse_embeddings`."""
    x = keras.Input((7,), dtype="int32", name="x")
    tied = L.ReversibleEmbedding(12, 6, name="tied")
    untied = L.ReversibleEmbedding(12, 6, tie_weights=False, name="untied")
    h = L.Dense(6, activation="tanh", name="mix")(tied(x) + untied(x))
    return keras.Model(x, tied(h, reverse=True) + untied(h, reverse=True), name="reversible")


def _inputs(model, rng, n):
    """Random data shaped like `model`'s inputs (same structure)."""

    def one(t):
        shape = (n,) + tuple(t.shape[1:])
        if "int" in t.dtype:
            return rng.integers(0, 5, shape).astype(t.dtype)
        return rng.standard_normal(shape).astype(t.dtype)

    return keras.tree.map_structure(one, model.input)


def _targets(model, rng, n):
    return keras.tree.map_structure(
        lambda t: rng.standard_normal((n,) + tuple(t.shape[1:])).astype("float32"), model.output
    )


def _predict(model, x):
    return keras.tree.map_structure(np.asarray, model.predict(x, verbose=0))


def _assert_same(a, b):
    keras.tree.assert_same_structure(a, b)
    for left, right in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        np.testing.assert_array_equal(left, right)


CASES = {
    "operations": (_operations, ["a/kernel", "b/kernel", "head/kernel"]),
    "lambda": (_lambda, ["a/kernel", "head/kernel"]),
    "masked_embedding": (_masked_embedding, ["embedding/embeddings", "head/kernel"]),
    "shared_layer": (_shared_layer, ["shared/kernel", "twice/kernel", "head/kernel"]),
    "nested": (_nested, ["stem/stem_dense/kernel", "inner/inner_dense/kernel", "head/kernel"]),
    "multi_io": (_multi_io, ["a/kernel", "out1/kernel", "out2/kernel"]),
    "dict_inputs": (
        _dict_inputs,
        ["embedding/embeddings", "a/kernel", "b/kernel", "score/kernel", "logits/kernel"],
    ),
    "reversible_embeddings": (
        _reversible_embeddings,
        ["tied/embeddings", "untied/embeddings", "untied/reverse_embeddings", "mix/kernel"],
    ),
}


def _schedule():
    return tfprune.schedules.PolynomialDecay(0.0, FINAL, 0, 8)


def _check_life_cycle(model, pruned, tensors, rng, tmp_path, safe_mode=True):
    """fit -> exact sparsity -> strip -> `.keras` round trips; returns the
    stripped model."""
    x = _inputs(model, rng, STEPS * BATCH)
    y = _targets(model, rng, STEPS * BATCH)
    pruned.compile(keras.optimizers.Adam(0.01), "mse")
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=2)])
    assert int(pruned.optimizer.iterations.numpy()) == STEPS

    report = tfprune.sparsity_report(pruned)
    assert sorted(f"{r['layer']}/{r['weight']}" for r in report.rows) == sorted(tensors)
    for row in report.rows:
        assert row["zeros"] == round(row["parameters"] * FINAL), row
    out = _predict(pruned, x)

    final = tfprune.strip(pruned)
    assert not any(isinstance(layer, tfprune.PruningWrapper)
                   for layer in final._flatten_layers(include_self=False))
    _assert_same(_predict(final, x), out)
    assert [(r["layer"], r["zeros"]) for r in tfprune.sparsity_report(final).rows] == [
        (r["layer"], r["zeros"]) for r in report.rows
    ]

    for name, saved in [("pruned", pruned), ("final", final)]:
        path = tmp_path / f"{name}.keras"
        saved.save(path)
        loaded = keras.saving.load_model(path, safe_mode=safe_mode)
        _assert_same(_predict(loaded, x), out)
        assert [r["zeros"] for r in tfprune.sparsity_report(loaded).rows] == [
            r["zeros"] for r in report.rows
        ]
    return final


@pytest.mark.parametrize("case", list(CASES))
def test_graph_model_prunes_strips_and_saves(case, rng, tmp_path):
    build, tensors = CASES[case]
    model = build()
    x = _inputs(model, rng, 8)
    before = _predict(model, x)
    pruned = tfprune.prune(model, _schedule())
    assert type(pruned) is type(model)
    _assert_same(_predict(model, x), before)  # the original is left untouched
    # A Lambda holds Python bytecode: loading it needs `safe_mode=False`.
    _check_life_cycle(model, pruned, tensors, rng, tmp_path, safe_mode=case != "lambda")


class _Net(keras.Model):
    """A Functional subclass, as keras_hub builds them: `__init__` takes its
    own arguments and hands a graph to `super().__init__`."""

    def __init__(self, units=6, **kwargs):
        x = keras.Input((6,), name="x")
        h = L.Dense(units, name="body")(x)
        super().__init__(x, L.Dense(1, name="head")(h[:, 1:] * 2.0), **kwargs)
        self.units = units


class _FunctionalLike(keras.Model):
    """A Functional subclass whose constructor takes `(inputs, outputs)`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)


def test_functional_subclass_is_copied_as_a_plain_functional_model(rng, tmp_path):
    model = _Net(name="net")
    with pytest.warns(UserWarning, match="'net' is a _Net; its copy is a plain Functional"):
        pruned = tfprune.prune(model, _schedule())
    assert type(pruned).__name__ == "Functional" and not isinstance(pruned, _Net)
    assert not tfprune.sparsity_report(model).zeros  # the original is untouched
    _check_life_cycle(model, pruned, ["body/kernel", "head/kernel"], rng, tmp_path)


def test_functional_subclass_with_a_graph_constructor_keeps_its_class(rng):
    x = keras.Input((6,), name="x")
    model = _FunctionalLike(
        x, L.Dense(1, name="head")(L.Dense(5, name="body")(x) + 1.0), name="functional_like"
    )
    pruned = tfprune.prune(model, _schedule())
    assert type(pruned) is _FunctionalLike
    data = _inputs(model, rng, STEPS * BATCH)
    pruned.compile("adam", "mse")
    pruned.fit(data, _targets(model, rng, STEPS * BATCH), batch_size=BATCH, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=2)])
    assert [r["zeros"] for r in tfprune.sparsity_report(pruned).rows] == [24, 4]
    final = tfprune.strip(pruned)
    assert type(final) is _FunctionalLike
    _assert_same(_predict(final, data), _predict(pruned, data))


class _PrunedNet(keras.Model):
    """A Functional subclass built around a `PruningWrapper` by hand."""

    def __init__(self, **kwargs):
        x = keras.Input((6,), name="x")
        wrapped = tfprune.PruningWrapper(L.Dense(4, name="body"), 0.5)
        super().__init__(x, keras.ops.sum(wrapped(x), axis=-1), **kwargs)


def test_strip_copies_a_functional_subclass_as_a_plain_functional_model(rng):
    model = _PrunedNet(name="pruned_net")
    x = rng.standard_normal((5, 6)).astype("float32")
    out = keras.ops.convert_to_numpy(model(x))
    with pytest.warns(UserWarning, match="'pruned_net' is a _PrunedNet; its copy is a plain"):
        final = tfprune.strip(model)
    assert type(final).__name__ == "Functional"
    assert [layer.name for layer in final.layers] == ["x", "body"]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(final(x)), out)


class _DerivedConfig(L.Layer):
    """A block whose config holds a value derived from its arguments, which
    its constructor rejects (keras_hub's ViTPatchingAndEmbedding does so):
    it cannot be re-created from its config."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.proj = L.Dense(units, name="proj")

    def build(self, input_shape):
        self.proj.build(input_shape)

    def call(self, x):
        return self.proj(x)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "fan_out": self.units}


class _Backbone(keras.Model):
    """A Functional subclass re-created from its own small config, as
    keras_hub backbones are."""

    def __init__(self, units=5, **kwargs):
        x = keras.Input((6,), name="x")
        h = _DerivedConfig(units, name="block")(x)
        super().__init__(x, L.Dense(1, name="head")(h), **kwargs)
        self.units = units

    def get_config(self):
        return {"units": self.units, "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_graph_subclass_with_an_uncopyable_layer_is_rebuilt_from_its_config(rng):
    model = _Backbone(name="backbone")
    x = _inputs(model, rng, STEPS * BATCH)
    before = _predict(model, x)
    with pytest.warns(UserWarning, match="'backbone' is a _Backbone; its copy") as caught:
        pruned = tfprune.prune(model, _schedule())
    assert not [w for w in caught if "shared with the original" in str(w.message)]
    # No variable is shared: training the copy leaves the original as it was.
    assert not {id(v) for v in model.weights} & {id(v) for v in pruned.weights}
    pruned.compile("adam", "mse")
    pruned.fit(x, _targets(model, rng, STEPS * BATCH), batch_size=BATCH, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=2)])
    assert [r["zeros"] for r in tfprune.sparsity_report(pruned).rows] == [24, 4]
    _assert_same(_predict(model, x), before)
    assert not tfprune.sparsity_report(model).zeros


def test_uncopyable_layer_of_a_functional_model_is_shared_and_named():
    x = keras.Input((6,), name="x")
    model = keras.Model(x, L.Dense(1, name="head")(_DerivedConfig(5, name="block")(x)))
    with pytest.warns(UserWarning, match=r"layers \['block'\] could not be re-created"):
        pruned = tfprune.prune(model, _schedule())
    assert pruned.get_layer("pruned_block").layer is model.get_layer("block")


class _LayerScale(L.Layer):
    """A learned per-channel scale (ConvNeXt's LayerScale): one vector."""

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gamma")

    def call(self, x):
        return x * self.gamma


def test_layer_owning_only_vectors_is_left_dense_without_a_warning():
    x = keras.Input((6,), name="x")
    model = keras.Model(x, _LayerScale(name="scale")(L.Dense(4, name="a")(x)))
    pruned = tfprune.prune(model, 0.5)  # a tfprune warning is an error here
    assert [r["layer"] for r in tfprune.sparsity_report(pruned).rows] == ["a"]


def test_wrapped_layer_takes_tensor_and_plain_keyword_arguments(rng, tmp_path):
    """keras_hub's T5 layers are called so: `attention_mask=<tensor>`,
    `use_causal_mask=False`."""
    x = keras.Input((4, 8), name="x")
    mask = keras.Input((4, 4), dtype="int32", name="mask")
    h = L.MultiHeadAttention(2, 4, name="mha")(x, x, attention_mask=mask, use_causal_mask=True)
    model = keras.Model([x, mask], L.Dense(1, name="head")(h), name="masked_attention")
    pruned = tfprune.prune(model, _schedule())
    tensors = [f"mha/{n}/kernel" for n in ("query", "key", "value", "attention_output")]
    _check_life_cycle(model, pruned, tensors + ["head/kernel"], rng, tmp_path)


def test_export_of_a_dict_input_model_keeps_each_input_in_its_place(rng, tmp_path):
    """Dict inputs whose keys are not in sorted order (every keras_hub
    backbone): the exporters call the model with a dict, and the flat
    inputs of the artifacts follow `model.inputs` (keys sorted). The two
    inputs have the same shape, so feeding one in place of the other would
    pass every shape check and only the verification would notice."""
    pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT is not installed")
    import tensorflow as tf

    inputs = {"tok": keras.Input((6,), name="tok"), "num": keras.Input((6,), name="num")}
    h = L.Concatenate(name="join")([L.Dense(8, name="a")(inputs["tok"]), inputs["num"] * 3.0])
    model = keras.Model(inputs, L.Dense(2, name="head")(h), name="unsorted_dict_inputs")
    pruned = tfprune.prune(model, 0.5)
    for layer in pruned.layers:
        if isinstance(layer, tfprune.PruningWrapper):
            layer.prune_to(0.5)
    sample = {"tok": rng.standard_normal((5, 6)).astype("float32"),
              "num": rng.standard_normal((5, 6)).astype("float32")}
    expected = keras.ops.convert_to_numpy(pruned(sample))

    result = tfprune.export.tflite(pruned, tmp_path / "model.tflite", sample_inputs=sample)
    assert result.max_abs_error < 1e-4
    assert "input_0=num, input_1=tok" in " ".join(result.notes)
    runner = _litert_runner(tmp_path / "model.tflite")
    got = runner(input_0=sample["num"], input_1=sample["tok"])
    np.testing.assert_allclose(list(got.values())[0], expected, atol=1e-4)

    saved = tfprune.export.saved_model(pruned, tmp_path / "saved", sample_inputs=sample)
    assert saved.max_abs_error < 1e-5
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(
        loaded.serve([sample["num"], sample["tok"]]).numpy(), expected, atol=1e-5
    )

    calibration = {k: rng.standard_normal((32, 6)).astype("float32") for k in ("num", "tok")}
    int8 = tfprune.export.tflite(pruned, tmp_path / "int8.tflite", quantize="int8",
                                 representative_data=calibration, sample_inputs=sample)
    assert int8.max_abs_error is not None

    with pytest.raises(TypeError, match=r"keys \['num', 'tok'\].*Received: sample_inputs="):
        tfprune.export.tflite(pruned, tmp_path / "bad.tflite", sample_inputs={"tok": sample["tok"]})


def _litert_runner(path):
    from ai_edge_litert import interpreter

    return interpreter.Interpreter(model_path=str(path)).get_signature_runner()


def test_protected_layers_of_nested_models_are_not_wrapped():
    """A protected layer deep in a nested graph model (or a nested block of a
    subclassed model) is left unwrapped, as at the top level: its tensors
    are named by their full path when `prune` decides."""
    inner = keras.Sequential([keras.Input((6,)), L.Dense(6, name="keep_me"),
                              L.Dense(6, name="prune_me")], name="inner")
    x = keras.Input((6,))
    functional = keras.Model(x, L.Dense(2, name="head")(inner(L.Dense(6, name="first")(x))))
    pruned = tfprune.prune(functional, 0.5, strategy=tfprune.strategies.Strategy(
        protect=["keep_me"]))
    wrapped = {w.layer.name for w in find_wrappers(pruned)}
    assert wrapped == {"first", "prune_me", "head"}

    @keras.saving.register_keras_serializable("tests_graph")
    class Block(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.keep_me = L.Dense(6, name="keep_me")
            self.prune_me = L.Dense(6, name="prune_me")

        def call(self, x):
            return self.prune_me(self.keep_me(x))

    @keras.saving.register_keras_serializable("tests_graph")
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.block = Block(name="block")
            self.head = L.Dense(1, name="head")

        def call(self, x):
            return self.head(self.block(x))

    net = Net()
    net(np.zeros((1, 6), "float32"))
    tfprune.prune(net, 0.5, strategy=tfprune.strategies.Strategy(protect=["block/keep_me"]))
    assert {w.layer.name for w in find_wrappers(net)} == {"prune_me", "head"}
