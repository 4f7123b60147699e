"""One tfmot pruning program, run under real tfmot and under
`tfprune.compat.tfmot`: only the two imports differ.

    python -m benchmarks._tfmot_program SIDE WEIGHTS.npz RESULT.json

SIDE is "tfmot" (tensorflow_model_optimization on tf_keras; needs
`TF_USE_LEGACY_KERAS=1`, the .venv-bench interpreter) or "compat"
(`import tfprune.compat.tfmot as tfmot` on Keras 3). WEIGHTS.npz holds the
dense weights of each model (the harness trains them once, so both sides
start from the same weights); RESULT.json gets, per program, the test
accuracy and the fraction of zeros of every kernel after `strip_pruning`.

The programs follow tfmot's guides: "Pruning in Keras" (a CNN pruned with
PolynomialDecay 0.5 -> 0.8), the 2:4 sparsity guide (one layer unstructured,
two 2:4), and an LSTM pruned with ConstantSparsity, on the digits data.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SIDE = sys.argv[1] if __name__ == "__main__" else os.environ.get("TFMOT_PROGRAM_SIDE", "compat")
if SIDE == "tfmot":
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
else:
    import keras

    import tfprune.compat.tfmot as tfmot


def digits(seed: int = 0):
    """The digits images (8x8), 1,400 for training, the rest for testing."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x[order] / 16.0).astype("float32").reshape(-1, 8, 8)
    return x[:1400], y[order][:1400], x[1400:], y[order][1400:]


def cnn():
    return keras.Sequential([
        keras.layers.InputLayer(input_shape=(8, 8)),
        keras.layers.Reshape(target_shape=(8, 8, 1)),
        keras.layers.Conv2D(filters=32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])


def two_of_four():
    return keras.Sequential([
        keras.layers.Reshape((8, 8, 1), input_shape=(8, 8)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="pruning_sparsity_0_5"),
        keras.layers.MaxPooling2D((2, 2), (2, 2), padding="same"),
        keras.layers.Conv2D(32, 3, padding="same", name="structural_pruning"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu", name="structural_pruning_dense"),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(10),
    ])


def lstm():
    return keras.Sequential([
        keras.layers.LSTM(32, input_shape=(8, 8)),
        keras.layers.Dense(10),
    ])


MODELS = {"cnn": cnn, "two_of_four": two_of_four, "lstm": lstm}
EPOCHS, BATCH = 4, 32


def _compile(model):
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])


def prune(name, model, steps):
    """The pruned model, wrapped as the guide for `name` wraps it."""
    prune_low_magnitude = tfmot.sparsity.keras.prune_low_magnitude
    if name == "cnn":
        pruning_params = {"pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.50, final_sparsity=0.80, begin_step=0, end_step=steps,
            frequency=20)}
        return prune_low_magnitude(model, **pruning_params)
    if name == "lstm":
        return prune_low_magnitude(model, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
            0.75, begin_step=0, frequency=20))

    def apply(layer):
        if layer.name == "pruning_sparsity_0_5":
            return prune_low_magnitude(layer, pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(
                target_sparsity=0.5, begin_step=0, frequency=20))
        if layer.name.startswith("structural_pruning"):
            return prune_low_magnitude(layer, sparsity_m_by_n=(2, 4))
        return layer

    return keras.models.clone_model(model, clone_function=apply)


def run(name, weights, data) -> dict:
    x, y, x_test, y_test = data
    keras.utils.set_random_seed(0)
    model = MODELS[name]()
    model.set_weights(weights)
    steps = int(np.ceil(len(x) / BATCH)) * EPOCHS
    pruned = prune(name, model, steps)
    _compile(pruned)
    pruned.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    _, accuracy = pruned.evaluate(x_test, y_test, verbose=0)
    final = tfmot.sparsity.keras.strip_pruning(pruned)
    zeros, gates = {}, {}
    for layer in final.layers:
        for weight in layer.weights:
            short = weight.name.split(":")[0].split("/")[-1]
            if short in ("kernel", "recurrent_kernel"):
                value = np.asarray(weight)
                zeros[f"{layer.name}/{short}"] = float(np.mean(value == 0))
                if isinstance(layer, keras.layers.LSTM):  # gates i, f, c, o
                    gates[f"{layer.name}/{short}"] = [
                        float(np.mean(g == 0)) for g in np.split(value, 4, axis=-1)]
    return {"accuracy": float(accuracy), "zeros": zeros, "gates": gates}


def train_dense(name, data, seed) -> list:
    """Dense weights for `name` (the harness calls this on the compat side)."""
    x, y, _, _ = data
    keras.utils.set_random_seed(seed)
    model = MODELS[name]()
    _compile(model)
    model.fit(x, y, batch_size=BATCH, epochs=15, verbose=0)
    return model.get_weights()


def main():
    weights_path, out = sys.argv[2], sys.argv[3]
    stored = np.load(weights_path)
    seed = int(stored["seed"])
    data = digits(seed)
    results = {}
    for name in MODELS:
        weights = [stored[f"{name}_{i}"] for i in range(int(stored[f"{name}_count"]))]
        results[name] = run(name, weights, data)
    versions = {"keras": keras.__version__}
    if SIDE == "tfmot":
        import tensorflow as tf

        versions.update(tensorflow=tf.__version__, tfmot="0.8.1")
    with open(out, "w") as f:
        json.dump({"side": SIDE, "seed": seed, "results": results, "versions": versions}, f)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
