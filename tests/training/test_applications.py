"""keras.applications models (random weights): prune -> fit -> strip.

Their graphs hold bare operations (`x + 3.0`, `x * y` written inline) next
to hundreds of layers. Each test traces a whole training step of a real
architecture on the CPU (about 1 and 2 minutes on two busy cores), so
they are marked slow: `pytest -m slow tests/training/test_applications.py` (or `make test-all`).
"""

import keras
import numpy as np
import pytest

import tfprune

FINAL = 0.8
STEPS, BATCH = 3, 2


def _build(name):
    return getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3), classes=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, unpruned",
    [
        ("MobileNetV3Small", None),
        # ConvNeXt's LayerScale is a custom layer whose only weight, `gamma`,
        # is a per-channel vector: left dense by design, like normalization
        # parameters, and not reported.
        ("ConvNeXtTiny", None),
    ],
    ids=["MobileNetV3Small", "ConvNeXtTiny"],
)
def test_application_prunes_trains_and_strips(name, unpruned, rng):
    model = _build(name)
    x = rng.random((STEPS * BATCH, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, STEPS * BATCH)
    before = np.asarray(model(x, training=False))
    tensors = [(r["layer"], r["weight"]) for r in tfprune.sparsity_report(model).rows]

    schedule = tfprune.schedules.PolynomialDecay(0.0, FINAL, 0, STEPS - 1)
    if unpruned is None:
        pruned = tfprune.prune(model, schedule)
    else:
        with pytest.warns(UserWarning, match=unpruned):
            pruned = tfprune.prune(model, schedule)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), before)

    pruned.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    pruned.fit(x, y, batch_size=BATCH, epochs=1, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=1)])
    assert int(pruned.optimizer.iterations.numpy()) == STEPS

    # Every convolution and dense kernel is pruned, each exactly to FINAL.
    report = tfprune.sparsity_report(pruned)
    assert [(r["layer"], r["weight"]) for r in report.rows] == tensors
    assert len(tensors) > 50
    for row in report.rows:
        assert row["zeros"] == round(row["parameters"] * FINAL), row

    out = np.asarray(pruned(x, training=False))
    final = tfprune.strip(pruned)
    assert not any(isinstance(layer, tfprune.PruningWrapper)
                   for layer in final._flatten_layers(include_self=False))
    np.testing.assert_array_equal(np.asarray(final(x, training=False)), out)
    assert [r["zeros"] for r in tfprune.sparsity_report(final).rows] == [
        r["zeros"] for r in report.rows
    ]
