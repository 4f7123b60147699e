"""The matrix view of each layer kind, and the step-by-step run of a graph."""

import keras
import numpy as np
import pytest

from tfprune._base import walk
from tfprune.oneshot._graph import Program
from tfprune.oneshot._views import view_of

L = keras.layers


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _view(layer):
    (pw,) = [pw for pw in walk.prunable_weights(layer) if pw.variable.name == "kernel"]
    view = view_of(pw, layer)
    assert not isinstance(view, str), view
    return pw, view


def _rows(view, layer, x):
    # A layer's `call` gets tensors (its `__call__` converts them), the views too.
    x = keras.ops.convert_to_tensor(x)
    return np.concatenate([_np(r) for r in view.inputs((x,), {}, None, layer.call)])


LINEAR = {
    "dense_3d_input": (lambda: L.Dense(5, use_bias=False), (3, 4, 6)),
    "einsum_qkv": (lambda: L.EinsumDense("abc,cde->abde", (None, 2, 3)), (2, 5, 6)),
    "einsum_output": (lambda: L.EinsumDense("abcd,cde->abe", (None, 4)), (2, 5, 2, 3)),
    "einsum_ellipsis": (lambda: L.EinsumDense("...b,bc->...c", 7), (2, 3, 4, 5)),
    "conv1d_causal_dilated": (
        lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2, use_bias=False), (2, 11, 3)),
    "conv1d_valid_strided": (lambda: L.Conv1D(4, 3, strides=2, use_bias=False), (2, 10, 3)),
    "conv2d_same_strided": (lambda: L.Conv2D(5, 3, strides=2, padding="same", use_bias=False),
                            (2, 9, 8, 3)),
    "conv2d_dilated": (lambda: L.Conv2D(2, (2, 3), dilation_rate=(2, 1), use_bias=False),
                       (2, 7, 7, 2)),
    "conv3d_same": (lambda: L.Conv3D(2, 2, padding="same", use_bias=False), (1, 4, 5, 3, 2)),
}


@pytest.mark.parametrize("kind", sorted(LINEAR))
def test_rows_times_the_matrix_is_the_layer(kind):
    make, shape = LINEAR[kind]
    layer = make()
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    y = _np(layer(x))
    pw, view = _view(layer)
    rows = _rows(view, layer, x)
    assert rows.shape[1] == view.features
    got = rows @ _np(view.to_2d(pw.variable))
    np.testing.assert_allclose(got, y.reshape(-1, view.units), rtol=1e-5, atol=1e-5)
    # And back: the matrix is the kernel's entries.
    np.testing.assert_array_equal(_np(view.from_2d(view.to_2d(pw.variable))), _np(pw.variable))


def test_conv_channels_first_and_in_chunks(monkeypatch):
    from tfprune.oneshot import _views

    monkeypatch.setattr(_views, "_PATCH_ELEMENTS", 200)  # one sample per chunk
    layer = L.Conv2D(3, 3, padding="same", data_format="channels_first", use_bias=False)
    x = np.random.default_rng(1).normal(size=(3, 2, 6, 5)).astype("float32")
    y = np.moveaxis(_np(layer(x)), 1, -1)
    pw, view = _view(layer)
    chunks = list(view.inputs((x,), {}, None, layer.call))
    assert len(chunks) == 3
    got = np.concatenate([_np(c) for c in chunks]) @ _np(view.to_2d(pw.variable))
    np.testing.assert_allclose(got, y.reshape(-1, 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls, go_backwards", [(L.LSTM, False), (L.GRU, True),
                                               (L.SimpleRNN, False)])
def test_recurrent_kernels_see_the_input_and_the_previous_state(cls, go_backwards):
    layer = cls(4, go_backwards=go_backwards)
    x = np.random.default_rng(2).normal(size=(2, 6, 3)).astype("float32")
    layer(x)
    pws = {pw.variable.name: pw for pw in walk.prunable_weights(layer)}
    kernel, state = (view_of(pws[n], layer) for n in ("kernel", "recurrent_kernel"))
    np.testing.assert_array_equal(_rows(kernel, layer, x), x.reshape(-1, 3))
    layer.return_sequences = True
    sequence = _np(layer(x))
    layer.return_sequences = False
    # h(t-1) for every step after the first, in the order the layer runs.
    np.testing.assert_allclose(_rows(state, layer, x), sequence[:, :-1].reshape(-1, 4),
                               rtol=1e-6, atol=1e-6)
    assert not layer.return_sequences and kernel.gates == pws["kernel"].gates


def test_layers_without_a_view_say_why():
    x = np.zeros((1, 5, 5, 4), "float32")
    reasons = {}
    for layer in [L.DepthwiseConv2D(3), L.Conv2D(4, 3, groups=2), L.Embedding(10, 3),
                  L.GRU(3, reset_after=False), L.LSTM(3, stateful=True)]:
        data = {L.Embedding: np.zeros((1, 4), "int32")}.get(type(layer))
        if isinstance(layer, L.RNN):
            data = np.zeros((1, 4, 2), "float32")
        layer(x if data is None else data)
        for pw in walk.prunable_weights(layer):
            view = view_of(pw, layer)
            if isinstance(view, str):
                reasons[f"{type(layer).__name__}/{pw.variable.name}"] = view
    assert reasons == {
        "DepthwiseConv2D/kernel":
            "DepthwiseConv2D is not a Dense, EinsumDense, Conv or recurrent layer",
        "Conv2D/kernel": "a grouped convolution (groups=2)",
        "Embedding/embeddings": "'embeddings' is not a kernel applied to the layer's input",
        "GRU/recurrent_kernel": "the recurrent kernel of a GRU with reset_after=False (its "
                                "candidate block multiplies r * h(t-1), not h(t-1))",
        "LSTM/recurrent_kernel": "the recurrent kernel of a stateful layer (its first state "
                                 "is not zero)",
    }


def _graphs():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    shared = L.Dense(4, name="shared")
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4, activation="tanh")])
    h = inner(shared(a)) + shared(L.Dense(4)(b))
    multi = keras.Model({"a": a, "b": b}, [L.Dense(2)(h), h[:, :1] * 2.0])
    tokens = keras.Input((7,), dtype="int32")
    e = L.Embedding(20, 5, mask_zero=True)(tokens)
    masked = keras.Model(tokens, L.Dense(1)(L.LSTM(3)(e)))
    rng = np.random.default_rng(3)
    tok = rng.integers(0, 20, (6, 7)).astype("int32")
    tok[:, 5:] = 0  # padding the mask hides
    return {
        "dict_inputs_shared_nested": (multi, {"a": rng.normal(size=(6, 4)).astype("float32"),
                                              "b": rng.normal(size=(6, 3)).astype("float32")}),
        "embedding_mask_lstm": (masked, tok),
    }


@pytest.mark.parametrize("name", ["dict_inputs_shared_nested", "embedding_mask_lstm"])
def test_the_program_computes_what_the_model_does(name):
    model, x = _graphs()[name]
    program = Program(model)
    outputs = {}

    def keep(index):
        def handle(run):
            outputs[index] = run()
            return outputs[index]
        return handle

    last = {i: keep(i) for i in range(len(program.steps))}
    program.run([x], last)
    expected = keras.tree.flatten(model(x))
    got = [v for outs in outputs.values() for v in outs[0]]
    for value in expected:
        assert any(np.allclose(_np(value), _np(g), atol=1e-6) for g in got
                   if tuple(g.shape) == tuple(value.shape))
    assert not any(isinstance(s.op, keras.Model) for s in program.steps)  # nested: inlined
