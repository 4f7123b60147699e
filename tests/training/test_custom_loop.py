"""Custom training loops, gradients of pruned weights and the mask constraint."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfprune
from tfprune import schedules
from tfprune import find_wrappers

# tf.GradientTape / tf.distribute / the in-step update: TensorFlow itself.
pytestmark = pytest.mark.tensorflow_only

L = keras.layers


def _model():
    return keras.Sequential([keras.Input((6,)), L.Dense(12, name="a"), L.Dense(2, name="head")])


def _dataset(rng, n=32, batch=4):
    x = rng.random((n, 6)).astype("float32")
    y = rng.random((n, 2)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


@pytest.mark.parametrize("traced", [True, False], ids=["tf_function", "eager"])
def test_custom_loop_with_callback_hooks_reaches_the_target(rng, check_pruned, traced):
    """The loop of the `PruningCallback` docstring and docs/custom_loops.md."""
    pruned = tfprune.prune(_model(), schedules.PolynomialDecay(0.0, 0.75, 0, 20))
    optimizer = keras.optimizers.Adam(0.01)
    pruned.compile(optimizer=optimizer)  # gives the callback its clock
    loss_fn = keras.losses.MeanSquaredError()

    callback = tfprune.PruningCallback(update_every=5)
    callback.set_model(pruned)
    callback.on_train_begin()

    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, pruned(x, training=True))
        grads = tape.gradient(loss, pruned.trainable_variables)
        optimizer.apply(grads, pruned.trainable_variables)
        return loss

    if traced:
        train_step = tf.function(train_step)
    updates = []
    for _ in range(3):
        for step, (x, y) in enumerate(_dataset(rng)):
            train_step(x, y)
            callback.on_train_batch_end(step)
            updates.append(sorted({int(w.pruning_step.numpy()) for w in find_wrappers(pruned)}))
    callback.on_train_end()

    assert int(optimizer.iterations.numpy()) == 24
    assert sorted({u[0] for u in updates}) == [0, 5, 10, 15, 20]
    check_pruned(pruned, 0.75)
    assert callback.sparsity == pytest.approx((54 + 18) / 96)
    # Once the callback has ended, training the wrappers is an error again.
    with pytest.raises(RuntimeError, match="PruningCallback"):
        pruned(np.zeros((1, 6), "float32"), training=True)


def _wrapped_dense(rng, sparsity=0.5):
    wrapper = tfprune.PruningWrapper(L.Dense(5), sparsity)
    wrapper.build((None, 8))
    wrapper.layer.kernel.assign(rng.normal(size=(8, 5)).astype("float32"))
    wrapper.prune_to(sparsity)
    return wrapper


def test_pruned_weights_get_exactly_zero_gradient(rng):
    wrapper = _wrapped_dense(rng)
    x = rng.normal(size=(16, 8)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapper(x) ** 2)
    kernel, bias = wrapper.layer.kernel, wrapper.layer.bias
    grad_kernel, grad_bias = tape.gradient(loss, [kernel.value, bias.value])
    mask = wrapper.masks[0].numpy()
    grad_kernel = grad_kernel.numpy()
    assert int((mask == 0).sum()) == 20
    assert np.all(grad_kernel[mask == 0] == 0)
    assert np.all(grad_kernel[mask == 1] != 0)
    assert np.all(grad_bias.numpy() != 0)  # biases are never masked


def test_forward_pass_uses_masked_weights_even_if_the_variable_changes(rng):
    wrapper = _wrapped_dense(rng)
    x = rng.normal(size=(4, 8)).astype("float32")
    expected = wrapper(x).numpy()
    kernel = wrapper.layer.kernel
    mask = wrapper.masks[0].numpy()
    # Write into pruned positions behind the wrapper's back.
    kernel.assign(np.where(mask == 0, 100.0, kernel.numpy()).astype("float32"))
    np.testing.assert_allclose(wrapper(x), expected, rtol=1e-6)


@pytest.mark.parametrize("use_fit", [True, False], ids=["fit", "optimizer_apply"])
def test_pruned_variables_stay_zero_under_adam_momentum(rng, use_fit):
    """Masks rise every 2 steps; Adam's moments of newly pruned weights are
    not zero, yet the variables are exactly zero after every step."""
    pruned = tfprune.prune(_model(), schedules.PolynomialDecay(0.0, 0.8, 0, 12, power=1))
    optimizer = keras.optimizers.Adam(0.05, beta_1=0.95)
    pruned.compile(optimizer, "mse")
    violations = []

    def check():
        for wrapper in find_wrappers(pruned):
            for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
                value = pw.variable.numpy()
                violations.append(int(np.count_nonzero(value[mask.numpy() == 0])))

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            check()

    # Checks run before the pruning callback, right after each optimizer step.
    pruning = tfprune.PruningCallback(update_every=2)
    if use_fit:
        x = rng.random((64, 6)).astype("float32")
        pruned.fit(x, x[:, :2], batch_size=4, verbose=0, callbacks=[Check(), pruning])
    else:
        pruning.set_model(pruned)
        pruning.on_train_begin()
        for step, (x, y) in enumerate(_dataset(rng, n=64)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((pruned(x, training=True) - y) ** 2)
            variables = pruned.trainable_variables
            optimizer.apply(tape.gradient(loss, variables), variables)
            check()
            pruning.on_train_batch_end(step)
        pruning.on_train_end()
    assert len(violations) == 2 * 16
    assert sum(violations) == 0
    momentum = [v for v in optimizer.variables if "momentum" in v.path and v.shape == (6, 12)]
    mask = find_wrappers(pruned)[0].masks[0].numpy()
    assert momentum and np.count_nonzero(momentum[0].numpy()[mask == 0]) > 0
