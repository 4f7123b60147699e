"""Programs written the way tfmot's guides write them, with one changed
import (`import tfprune.compat.tfmot as tfmot`), on Keras 3."""

import numpy as np
import pytest

import keras
import tfprune
import tfprune.compat.tfmot as tfmot

from sklearn.datasets import load_digits

sparsity = tfmot.sparsity.keras
L = keras.layers


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def _fraction(variable):
    value = keras.ops.convert_to_numpy(variable)
    return float(np.mean(value == 0))


def _kept(size, s):
    # tfmot keeps max(round(size * (1 - s)), 1) weights (float32, half to even).
    return max(int(np.round(np.float32(size) * (np.float32(1) - np.float32(s)))), 1)


def test_pruning_with_keras_guide(digits, tmp_path):
    """tfmot's "Pruning in Keras" example: train, prune the whole model with
    PolynomialDecay, fine-tune with UpdatePruningStep and PruningSummaries,
    strip, save, export."""
    x, y, x_test, y_test = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        L.InputLayer(shape=(8, 8)),
        L.Reshape(target_shape=(8, 8, 1)),
        L.Conv2D(filters=32, kernel_size=(3, 3), activation="relu"),
        L.MaxPooling2D(pool_size=(2, 2)),
        L.Flatten(),
        L.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=15, validation_split=0.1, verbose=0)
    _, baseline = model.evaluate(x_test, y_test, verbose=0)

    prune_low_magnitude = sparsity.prune_low_magnitude
    batch_size, epochs = 32, 4
    end_step = np.ceil(len(x) / batch_size).astype(np.int32) * epochs  # 176
    pruning_params = {"pruning_schedule": sparsity.PolynomialDecay(
        initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=end_step,
        frequency=20)}
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(optimizer="adam",
                              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              metrics=["accuracy"])
    names = [layer.name for layer in model_for_pruning.layers]
    assert names == ["reshape", "prune_low_magnitude_conv2d", "max_pooling2d", "flatten",
                     "prune_low_magnitude_dense"]
    callbacks = [sparsity.UpdatePruningStep(),
                 sparsity.PruningSummaries(log_dir=str(tmp_path / "logs"))]
    model_for_pruning.fit(x, y, batch_size=batch_size, epochs=epochs, callbacks=callbacks,
                          verbose=0)
    _, accuracy = model_for_pruning.evaluate(x_test, y_test, verbose=0)

    # Updates at steps 20, 40, ..., 160 (tfmot's rule): the last one sets the sparsity.
    _, last = pruning_params["pruning_schedule"](160)
    model_for_export = sparsity.strip_pruning(model_for_pruning)
    assert [layer.name for layer in model_for_export.layers] == [
        "reshape", "conv2d", "max_pooling2d", "flatten", "dense"]
    for layer in ("conv2d", "dense"):
        kernel = model_for_export.get_layer(layer).kernel
        size = int(np.prod(kernel.shape))
        assert _fraction(kernel) == (size - _kept(size, float(last))) / size
    assert accuracy > baseline - 0.06 and accuracy > 0.8, (baseline, accuracy)
    # The summaries: the sparsity of each mask at the start of each epoch.
    assert (tmp_path / "logs" / "metrics").is_dir()

    model_for_export.save(tmp_path / "pruned.keras")
    reloaded = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(reloaded.predict(x_test[:8], verbose=0),
                               model_for_export.predict(x_test[:8], verbose=0), atol=1e-6)


def test_comprehensive_guide_programs(tmp_path):
    """Whole model, some layers through clone_model, a custom PrunableLayer,
    the default schedule, prune_scope and block sparsity."""
    input_shape = [20]
    x = np.random.default_rng(0).normal(size=(64, 20)).astype("float32")
    y = keras.utils.to_categorical(np.random.default_rng(1).integers(0, 20, 64), 20)

    def setup_model():
        return keras.Sequential([L.Dense(20, input_shape=input_shape), L.Flatten()])

    base_model = setup_model()
    model_for_pruning = sparsity.prune_low_magnitude(base_model)
    assert [type(layer).__name__ for layer in model_for_pruning.layers] == [
        "PruneLowMagnitude", "Flatten"]
    assert model_for_pruning.layers[0].layer is base_model.layers[0]  # shared, as in tfmot

    # Some layers: clone_model with a clone function.
    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense):
            return sparsity.prune_low_magnitude(layer)
        return layer

    model_for_pruning = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    assert isinstance(model_for_pruning.layers[0], sparsity.PruneLowMagnitude)

    # Functional and Sequential with wrapped layers.
    i = keras.Input(shape=(20,))
    out = sparsity.prune_low_magnitude(L.Dense(10))(i)
    functional = keras.Model(inputs=i, outputs=out)
    assert isinstance(functional.layers[1], sparsity.PruneLowMagnitude)

    # A custom layer that says which weights to prune.
    class MyDenseLayer(keras.layers.Dense, sparsity.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel, self.bias]

    model = keras.Sequential([sparsity.prune_low_magnitude(MyDenseLayer(20, input_shape=input_shape)),
                              L.Flatten()])
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    # The default schedule (ConstantSparsity(0.5, 0), every 100 steps) prunes
    # nothing in two steps, as in tfmot; ConstantSparsity(0.5, 0, frequency=2) does.
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    assert [_fraction(w) for w in model.layers[0].layer.get_prunable_weights()] == [0.0, 0.0]
    model = keras.Sequential([sparsity.prune_low_magnitude(
        MyDenseLayer(20, input_shape=input_shape),
        pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=2)), L.Flatten()])
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    assert [_fraction(w) for w in model.layers[0].layer.get_prunable_weights()] == [0.5, 0.5]

    # Checkpoint and reload inside prune_scope; training goes on.
    model = sparsity.prune_low_magnitude(
        setup_model(), pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=2))
    model.compile(loss=keras.losses.categorical_crossentropy, optimizer="adam")
    model.fit(x, y, batch_size=32, epochs=1, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    model.save(tmp_path / "checkpoint.keras")
    with sparsity.prune_scope():
        loaded = keras.saving.load_model(tmp_path / "checkpoint.keras")
    assert loaded.layers[0].pruning_schedule == sparsity.ConstantSparsity(0.5, 0, frequency=2)
    assert int(loaded.optimizer.iterations.numpy()) == 2
    loaded.fit(x, y, batch_size=32, epochs=1, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    assert _fraction(loaded.layers[0].layer.kernel) == 0.5

    # Block sparsity: blocks of 1 x 4 of the (inputs, outputs) kernel.
    block_model = sparsity.prune_low_magnitude(
        setup_model(), block_size=[1, 4],
        pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    block_model.compile(loss="mse", optimizer="adam")
    block_model.fit(x, y, batch_size=32, epochs=1, callbacks=[sparsity.UpdatePruningStep()],
                    verbose=0)
    kernel = keras.ops.convert_to_numpy(sparsity.strip_pruning(block_model).layers[0].kernel)
    blocks = (kernel.reshape(20, 5, 4) == 0).all(axis=2)
    assert blocks.sum() == 50 and ((kernel == 0).sum() == 200)


def test_custom_training_loop_with_the_callback_driven_by_hand(tmp_path):
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).normal(size=(96, 20)).astype("float32")
    y = x @ np.random.default_rng(1).normal(size=(20, 1)).astype("float32")
    model = keras.Sequential([keras.Input((20,)), L.Dense(32, activation="relu"), L.Dense(1)])
    model_for_pruning = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.75, begin_step=0, frequency=3))
    loss = keras.losses.MeanSquaredError()
    optimizer = keras.optimizers.Adam()
    model_for_pruning.optimizer = optimizer
    step_callback = sparsity.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)
    log_callback = sparsity.PruningSummaries(log_dir=str(tmp_path))
    log_callback.set_model(model_for_pruning)
    step_callback.on_train_begin()
    steps = 0
    for _ in range(2):
        log_callback.on_epoch_begin(epoch=-1)
        for start in range(0, 96, 32):
            step_callback.on_train_batch_begin(batch=-1)
            xb, yb = x[start:start + 32], y[start:start + 32]
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                with tf.GradientTape() as tape:
                    value = loss(yb, model_for_pruning(xb, training=True))
                grads = tape.gradient(value, model_for_pruning.trainable_variables)
                optimizer.apply_gradients(zip(grads, model_for_pruning.trainable_variables))
            else:
                pytest.skip("a GradientTape loop (TensorFlow)")
            steps += 1
        step_callback.on_epoch_end(batch=-1)
    assert steps == 6 and int(optimizer.iterations.numpy()) == 6
    # Updated at steps 3 and 6: exactly 75% of each kernel.
    stripped = sparsity.strip_pruning(model_for_pruning)
    assert [_fraction(layer.kernel) for layer in stripped.layers] == [0.75, 0.75]


# On JAX, Keras' trainer empties the variables before the step and the error
# raised inside it surfaces as a TypeError of an emptied variable.
@pytest.mark.tensorflow_only
def test_training_without_the_callback_raises_tfmots_error():
    model = sparsity.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    model.compile("sgd", "mse")
    with pytest.raises(RuntimeError, match="Prune\\(\\) wrapper requires the UpdatePruningStep "
                                           "callback to be provided during training"):
        model.fit(np.zeros((8, 4)), np.zeros((8, 3)), verbose=0)
    # Inference needs no callback.
    assert model.predict(np.zeros((2, 4)), verbose=0).shape == (2, 3)


def test_sparsity_2_by_4_guide(tmp_path):
    """Mixed per-layer settings: one layer unstructured, the others 2:4,
    the callback passed bare (not in a list)."""
    keras.utils.set_random_seed(2)
    pruning_params_2_by_4 = {"sparsity_m_by_n": (2, 4)}
    pruning_params_sparsity_0_5 = {"pruning_schedule": sparsity.ConstantSparsity(
        target_sparsity=0.5, begin_step=0, frequency=2)}
    prune_low_magnitude = sparsity.prune_low_magnitude
    model = keras.Sequential([
        prune_low_magnitude(L.Conv2D(8, 3, padding="same", activation="relu",
                                     input_shape=(8, 8, 1), name="pruning_sparsity_0_5"),
                            **pruning_params_sparsity_0_5),
        L.MaxPooling2D((2, 2), (2, 2), padding="same"),
        prune_low_magnitude(L.Conv2D(16, 3, padding="same", name="structural_pruning"),
                            **pruning_params_2_by_4),
        L.BatchNormalization(), L.ReLU(), L.Flatten(),
        prune_low_magnitude(L.Dense(32, activation="relu", name="structural_pruning_dense"),
                            **pruning_params_2_by_4),
        L.Dropout(0.4), L.Dense(10),
    ])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer="adam", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, 64)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=sparsity.UpdatePruningStep(),
              validation_split=0.25)
    model = sparsity.strip_pruning(model)
    assert _fraction(model.get_layer("pruning_sparsity_0_5").kernel) == 0.5
    for name in ("structural_pruning", "structural_pruning_dense"):
        kernel = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
        groups = kernel.reshape(-1, kernel.shape[-2] // 4, 4, kernel.shape[-1])
        assert ((groups == 0).sum(axis=2) == 2).all(), name
    path = tmp_path / "two_of_four.tflite"
    if keras.backend.backend() == "tensorflow":
        result = tfprune.export.tflite(model, path)
        assert result.max_abs_error is not None and path.stat().st_size > 0


def test_recurrent_and_attention_models():
    keras.utils.set_random_seed(3)
    x = np.random.default_rng(0).normal(size=(32, 6, 8)).astype("float32")
    inputs = keras.Input((6, 8))
    h = L.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    h = L.LSTM(8)(h)
    outputs = L.Dense(1)(h)
    model = keras.Model(inputs, outputs)
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.6, 0, frequency=1))
    wrapped = {layer.layer.name: [pw.name for pw in layer.pruned_weights]
               for layer in pruned.layers if isinstance(layer, sparsity.PruneLowMagnitude)}
    assert sorted(wrapped) == ["dense", "lstm", "multi_head_attention"]
    assert len(wrapped["multi_head_attention"]) == 4 and len(wrapped["lstm"]) == 2
    pruned.compile("adam", "mse")
    pruned.fit(x, x[:, 0, :1], batch_size=16, epochs=1, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    stripped = sparsity.strip_pruning(pruned)
    report = tfprune.sparsity_report(stripped)
    for name in ("lstm/lstm_cell/kernel", "lstm/lstm_cell/recurrent_kernel",
                 "multi_head_attention/query/kernel", "multi_head_attention/attention_output/kernel"):
        assert report[name]["sparsity"] == pytest.approx(0.6, abs=0.01), name
    assert report["dense/kernel"]["sparsity"] == 5 / 8  # round(8 * 0.6) of 8


def test_unsupported_layers_and_objects_fail_as_in_tfmot():
    class Custom(keras.layers.Layer):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Please initialize `Prune` with a supported layer"):
        sparsity.prune_low_magnitude(keras.Sequential([keras.Input((3,)), Custom()]))
    with pytest.raises(ValueError, match="can only prune an object of the following types"):
        sparsity.prune_low_magnitude(object())

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="You passed an object of type: Subclassed"):
        sparsity.prune_low_magnitude(Subclassed())
    # Layers with nothing to prune are accepted and left as they are.
    assert isinstance(sparsity.prune_low_magnitude(L.Flatten()), L.Flatten)
