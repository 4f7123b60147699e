"""Pruning under `tf.distribute.MirroredStrategy` on two logical CPUs.

The devices must be configured before TensorFlow initializes them, so the
run happens in a fresh process.
"""

import pytest

# tf.distribute: TensorFlow itself.
pytestmark = pytest.mark.tensorflow_only

CODE = """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
import numpy as np
import tfprune

L = keras.layers
rng = np.random.default_rng(0)
x = rng.random((64, 6)).astype("float32")
y = rng.random((64, 1)).astype("float32")


def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), L.Dense(10), L.Dense(1)])
        schedule = tfprune.schedules.PolynomialDecay(0.0, 0.7, begin_step=0, end_step=8, power=1)
        pruned = tfprune.prune(model, schedule)
        pruned.compile(keras.optimizers.Adam(0.01), "mse")
    history = pruned.fit(x, y, batch_size=16, epochs=3, verbose=0,
                         callbacks=[tfprune.PruningCallback(update_every=2)])
    replicas = []
    for wrapper in tfprune._training.wrapper.find_wrappers(pruned):
        for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
            values = strategy.experimental_local_results(pw.variable.value)
            masks = strategy.experimental_local_results(mask.value)
            replicas.append({
                "name": pw.name,
                "copies": len(values),
                "same_masks": all(np.array_equal(m.numpy(), masks[0].numpy()) for m in masks),
                "zero_where_masked": all(
                    bool(np.all(v.numpy()[masks[0].numpy() == 0] == 0)) for v in values
                ),
            })
    return {
        "replicas_in_sync": strategy.num_replicas_in_sync,
        "report": tfprune.sparsity_report(pruned).to_dict(),
        "history": history.history["sparsity"],
        "replicas": replicas,
        "loss": history.history["loss"],
    }


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
json.dump({"mirrored": run(mirrored), "single": run(tf.distribute.get_strategy())}, open(RESULT, "w"))
"""


def test_mirrored_strategy_reaches_the_single_device_sparsity(run_python):
    result = run_python(CODE)
    mirrored, single = result["mirrored"], result["single"]
    assert mirrored["replicas_in_sync"] == 2
    assert single["replicas_in_sync"] == 1
    zeros = [t["zeros"] for t in mirrored["report"]["tensors"]]
    assert zeros == [round(60 * 0.7), round(10 * 0.7)]
    assert zeros == [t["zeros"] for t in single["report"]["tensors"]]
    assert mirrored["history"] == single["history"]
    for replica in mirrored["replicas"]:
        assert replica["copies"] == 2, replica
        assert replica["same_masks"] and replica["zero_where_masked"], replica
    # Same data, same global batch: the two runs train alike.
    assert abs(mirrored["loss"][-1] - single["loss"][-1]) < 1e-3 * max(1.0, single["loss"][-1])
