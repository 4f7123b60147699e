import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfprune import criteria
from tfprune import granularity


def assert_round_trip(obj):
    config = obj.get_config()
    assert type(obj).from_config(config).get_config() == config
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(obj)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(obj)
    assert restored.get_config() == config
    assert restored == obj


def np_(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


W = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 3.0]], "float32")
G1 = np.array([[1.0, 0.5, 2.0], [-1.0, 2.0, 0.0]], "float32")
G2 = np.array([[0.5, -1.0, 1.0], [1.0, -2.0, 1.0]], "float32")


@pytest.mark.parametrize(
    "obj",
    [
        criteria.Magnitude(),
        criteria.Random(seed=7),
        criteria.Taylor(),
        criteria.Movement(),
        criteria.L1Norm(),
        criteria.L2Norm(),
        criteria.L1Regularizer(0.01),
        criteria.GroupLasso(0.5, axis=0),
    ],
)
def test_config_round_trip(obj):
    assert_round_trip(obj)


def test_magnitude_scores_are_absolute_values():
    np.testing.assert_array_equal(np_(criteria.Magnitude().score(W)), np.abs(W))
    assert not criteria.Magnitude().needs_gradients
    assert criteria.Magnitude().initial_state(W) is None


def test_random_is_deterministic_given_seed_step_and_key():
    r = criteria.Random(seed=3)
    a = np_(r.score(W, step=10, key=1))
    np.testing.assert_array_equal(a, np_(criteria.Random(seed=3).score(W, step=10, key=1)))
    assert not np.array_equal(a, np_(r.score(W, step=11, key=1)))
    assert not np.array_equal(a, np_(r.score(W, step=10, key=2)))
    assert not np.array_equal(a, np_(criteria.Random(seed=4).score(W, step=10, key=1)))
    assert a.shape == W.shape and a.min() >= 0.0 and a.max() < 1.0


def test_random_rejects_a_bad_seed():
    with pytest.raises(ValueError, match=r"Received: seed=-1$"):
        criteria.Random(seed=-1)


def test_taylor_accumulates_absolute_gradient_times_weight():
    t = criteria.Taylor()
    assert t.needs_gradients and t.reset_after_update
    state = t.initial_state(W)
    np.testing.assert_array_equal(np_(state), np.zeros_like(W))
    # Before any gradient: magnitude.
    np.testing.assert_array_equal(np_(t.score(W, state)), np.abs(W))
    state = t.accumulate(state, W, G1)
    state = t.accumulate(state, W, G2)
    expected = np.abs(G1 * W) + np.abs(G2 * W)
    np.testing.assert_allclose(np_(t.score(W, state)), expected, rtol=1e-6)
    # The most important weight by Taylor is not the largest one.
    assert np.argmax(expected) != np.argmax(np.abs(W))


def test_movement_accumulates_minus_gradient_times_weight():
    m = criteria.Movement()
    assert m.needs_gradients and not m.reset_after_update
    state = m.accumulate(m.accumulate(m.initial_state(W), W, G1), W, G2)
    np.testing.assert_allclose(np_(m.score(W, state)), -(G1 * W) - (G2 * W), rtol=1e-6)
    # A weight moving toward zero (gradient with its sign) scores negative.
    s = np_(m.score(W, m.accumulate(m.initial_state(W), W, np.sign(W))))
    assert np.all(s[W != 0] < 0)


def test_norm_criteria_rank_units_by_their_norm():
    # Column 0: L1 = 4, L2 = 2. Column 1: L1 = 3, L2 = 3. Column 2: large.
    w = np.array([[1.0, 3.0, 5.0], [1.0, 0.0, 5.0], [1.0, 0.0, 5.0], [1.0, 0.0, 5.0]], "float32")
    units = granularity.Units()
    by_l1 = np_(units.mask(criteria.L1Norm().score(w), 1 / 3))
    by_l2 = np_(units.mask(criteria.L2Norm().score(w), 1 / 3))
    np.testing.assert_array_equal(by_l1[0], [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(by_l2[0], [0.0, 1.0, 1.0])


def test_gradient_free_criteria_refuse_to_accumulate():
    with pytest.raises(NotImplementedError):
        criteria.Magnitude().accumulate(None, W, G1)


def test_get_resolves_names_objects_and_configs():
    assert criteria.get("taylor") == criteria.Taylor()
    assert criteria.get("L2") == criteria.L2Norm()
    r = criteria.Random(seed=5)
    assert criteria.get(r) is r
    assert criteria.get(keras.saving.serialize_keras_object(r)) == r
    with pytest.raises(ValueError, match=r"Received: criterion='snip'$"):
        criteria.get("snip")
    with pytest.raises(TypeError, match=r"Received: criterion=3$"):
        criteria.get(3)


@pytest.mark.tensorflow_only  # tf.GradientTape
def test_l1_regularizer_penalizes_only_the_doomed_weights():
    reg = criteria.L1Regularizer(0.1)
    mask_to_be = (np.abs(W) > 0.6).astype("float32")
    expected = 0.1 * np.sum(np.abs(W) * (1 - mask_to_be))
    assert float(np_(reg(W, mask_to_be))) == pytest.approx(expected, rel=1e-6)
    w = tf.Variable(W)
    with tf.GradientTape() as tape:
        loss = reg(w, mask_to_be)
    grad = tape.gradient(loss, w).numpy()
    assert np.all(grad[mask_to_be == 1] == 0)
    assert np.all(grad[(mask_to_be == 0) & (W != 0)] != 0)


def test_group_lasso_sums_the_norms_of_doomed_units():
    reg = criteria.GroupLasso(2.0)
    mask_to_be = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    expected = 2.0 * (np.linalg.norm(W[:, 0]) + np.linalg.norm(W[:, 2]))
    assert float(np_(reg(W, mask_to_be))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"Received: strength=-1$"):
        criteria.GroupLasso(-1)


@pytest.mark.tensorflow_only
def test_accumulate_on_backward_feeds_the_gradient_and_passes_it_through():
    taylor = criteria.Taylor()
    w = tf.Variable(W)
    state = keras.Variable(np.zeros_like(W), trainable=False)
    x = tf.constant(G1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(criteria.accumulate_on_backward(w, state, taylor) * x)
    grad = tape.gradient(loss, w)
    np.testing.assert_allclose(grad.numpy(), G1)  # untouched
    np.testing.assert_allclose(np_(state.value), np.abs(G1 * W), rtol=1e-6)


class _TaylorDense(keras.layers.Layer):
    """A layer that gathers Taylor scores during fit with the backward hook."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), initializer="ones")
        self.state = self.add_weight(
            shape=(input_shape[-1], 2), initializer="zeros", trainable=False
        )

    def call(self, x, training=None):
        kernel = self.kernel
        if training:
            kernel = criteria.accumulate_on_backward(kernel, self.state, criteria.Taylor())
        return x @ kernel


@pytest.mark.parametrize("jit_compile", [False, True])
def test_accumulate_on_backward_works_inside_fit(jit_compile):
    layer = _TaylorDense()
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile("sgd", "mse", jit_compile=jit_compile)
    x = np.array([[1.0, 0.0, 2.0]] * 8, "float32")
    model.fit(x, np.zeros((8, 2), "float32"), epochs=1, batch_size=4, verbose=0)
    state = np_(layer.state.value)
    # Two steps accumulated; the input that is always zero gets no score.
    assert np.all(state[0] > 0) and np.all(state[2] > state[0])
    np.testing.assert_array_equal(state[1], [0.0, 0.0])
