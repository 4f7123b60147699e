"""tfprune on the JAX backend, and across devices and processes with
`keras.distribution`.

`make test` runs this module a second time with `KERAS_BACKEND=jax` (the
first, TensorFlow, pass skips the in-process cases). The multi-device and
multi-process cases run in child processes, which need JAX installed
(`pip install tfprune[jax]`), whatever the backend of the parent.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import tfprune
from tfprune._masks import core as _mask_math
from tfprune.export import _backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
on_jax = pytest.mark.skipif(keras.backend.backend() != "jax",
                            reason="in-process JAX case: `make test` runs it with KERAS_BACKEND=jax")
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                               reason="JAX is not installed (pip install tfprune[jax])")
# The child-process cases set their own backend: run once, from the first pass.
children = pytest.mark.skipif(keras.backend.backend() == "jax",
                              reason="run by the TensorFlow pass (child processes)")


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8)).astype("float32")
    return x, (x @ rng.random((8, 1))).astype("float32")


def _model():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])


def _zeros(x) -> int:
    x = np.asarray(keras.ops.convert_to_numpy(x))
    return int(x.size - np.count_nonzero(x))


@on_jax
@pytest.mark.parametrize("strategy", [None, "recurrent", tfprune.strategies.Strategy(
    "l2_norm", tfprune.granularity.Units(), "uniform"), tfprune.strategies.Strategy("taylor")],
    ids=["magnitude", "global", "units", "taylor"])
def test_fit_prunes_exactly_and_strip_keeps_predictions(strategy, tmp_path):
    x, y = _data()
    pruned = tfprune.prune(_model(), tfprune.schedules.PolynomialDecay(0.0, 0.75, 0, 24),
                           strategy=strategy)
    pruned.compile("adam", "mse")
    history = pruned.fit(x, y, batch_size=32, epochs=4, verbose=0,
                         callbacks=[tfprune.PruningCallback(update_every=5)])
    wrappers = [layer for layer in pruned.layers if isinstance(layer, tfprune.PruningWrapper)]
    total = zeros = 0
    for wrapper in wrappers:
        assert int(keras.ops.convert_to_numpy(wrapper.pruning_step)) == 24
        for pw, mask in zip(wrapper.pruned_weights, wrapper.masks):
            # Held at zero in the variable itself at the end of training.
            value = np.asarray(pw.variable.numpy())
            assert np.all(value[np.asarray(mask.numpy()) == 0] == 0)
            total, zeros = total + value.size, zeros + _zeros(mask)
    if strategy is None:  # per tensor: round(n * s) each
        for wrapper in wrappers:
            for mask in wrapper.masks:
                assert _zeros(mask) == _mask_math.num_pruned(int(np.size(mask)), 0.75)
    assert history.history["sparsity"][-1] == pytest.approx(zeros / total)
    final = tfprune.strip(pruned)
    np.testing.assert_allclose(final.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    path = str(tmp_path / "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


_GRADIENT_RUN = textwrap.dedent("""
    import json, os, sys
    import keras, numpy as np
    import tfprune
    here, other = sys.argv[1], sys.argv[2]  # this backend's folder, the other's (or "")

    def wrappers(model):
        return [layer for layer in model.layers if isinstance(layer, tfprune.PruningWrapper)]

    def state(model):
        return {"masks": [np.asarray(m.numpy()).tolist() for w in wrappers(model) for m in w.masks],
                "scores": [np.asarray(s.score.numpy()).tolist()
                           for w in wrappers(model) for s in w.slots]}

    rng = np.random.default_rng(0)
    x = rng.random((64, 8)).astype("float32")
    y = (x @ rng.random((8, 1))).astype("float32")
    for criterion in ("taylor", "movement"):
        if not os.path.exists(os.path.join(here, criterion + ".json")):
            model = keras.Sequential([keras.Input((8,)),
                                      keras.layers.Dense(32, activation="relu"),
                                      keras.layers.Dense(1)])
            for i, w in enumerate(model.weights):  # the same weights on both backends
                w.assign(np.random.default_rng(i).normal(size=w.shape).astype("float32") * 0.5)
            pruned = tfprune.prune(
                model, tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, 6),
                strategy=tfprune.strategies.Strategy(criterion, "unstructured"))
            pruned.compile(keras.optimizers.SGD(0.01), "mse")
            pruned.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False,
                       callbacks=[tfprune.PruningCallback(update_every=2)])
            pruned.save(os.path.join(here, criterion + ".keras"))
            result = dict(state(pruned), optimizer_variables=len(pruned.optimizer.variables),
                          score_trainable=[s.score.trainable for w in wrappers(pruned)
                                           for s in w.slots])
            json.dump(result, open(os.path.join(here, criterion + ".json"), "w"))
        if other:  # this backend loads the file the other one saved
            loaded = keras.saving.load_model(os.path.join(other, criterion + ".keras"))
            json.dump(state(loaded), open(os.path.join(here, criterion + ".loaded.json"), "w"))
""")


def _run_on(backend, here, other=""):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.run([sys.executable, "-c", _GRADIENT_RUN, str(here), str(other)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, (child.stdout + child.stderr)[-3000:]


@needs_jax
@children
def test_gradient_criteria_give_the_masks_and_scores_of_tensorflow(tmp_path):
    tf_dir, jax_dir = tmp_path / "tensorflow", tmp_path / "jax"
    tf_dir.mkdir(), jax_dir.mkdir()
    _run_on("tensorflow", tf_dir)
    _run_on("jax", jax_dir, other=tf_dir)  # trains, then loads TensorFlow's files
    _run_on("tensorflow", tf_dir, other=jax_dir)  # loads JAX's files
    for criterion in ("taylor", "movement"):
        on_tf, on_jax = (json.load(open(d / f"{criterion}.json")) for d in (tf_dir, jax_dir))
        # On JAX the optimizer writes the score from the backward pass (a
        # trainable variable without slots); TensorFlow assigns it there.
        assert on_jax["score_trainable"] == [True, True]
        assert on_tf["score_trainable"] == [False, False]
        assert on_jax["optimizer_variables"] == on_tf["optimizer_variables"]
        for a, b in zip(on_jax["masks"], on_tf["masks"]):
            np.testing.assert_array_equal(a, b, err_msg=criterion)
            assert _zeros(a) == _mask_math.num_pruned(np.size(a), 0.5)
        for a, b in zip(on_jax["scores"], on_tf["scores"]):
            assert np.count_nonzero(a) > 0
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=criterion)
        # One save format: each backend loads the other's file, scores included.
        for saved, loaded in ((on_tf, jax_dir), (on_jax, tf_dir)):
            got = json.load(open(loaded / f"{criterion}.loaded.json"))
            assert got["masks"] == saved["masks"] and got["scores"] == saved["scores"]


def test_gradient_criteria_name_the_backends_that_run_them(monkeypatch):
    from tfprune._base import backend

    monkeypatch.setattr(backend, "_GRADIENT_BACKENDS", ("another",))
    strategy = tfprune.strategies.Strategy("taylor", "unstructured", "uniform")
    with pytest.raises(ValueError, match=r"PyTorch autograd.*Received: criterion=Taylor"):
        tfprune.prune(_model(), 0.5, strategy=strategy)


# ------------------------------------------------------- child processes
_CHILD = textwrap.dedent("""
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    processes, index, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    if processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                                   num_processes=processes, process_id=index)
    import keras, numpy as np
    import tfprune
    devices = jax.devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    distribution.auto_shard_dataset = False  # each process passes its own shard
    keras.distribution.set_distribution(distribution)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(1)])
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.8, 0, 16),
                           strategy=tfprune.strategies.Strategy(os.environ["CRITERION"]))
    pruned.compile("adam", "mse")
    rng = np.random.default_rng(index)
    x = rng.random((128, 8)).astype("float32")
    pruned.fit(x, x.sum(1, keepdims=True), batch_size=16, epochs=3, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=4)])
    masks = [m for layer in pruned.layers for m in getattr(layer, "masks", [])]
    # Every device holds the same mask.
    shards = [[np.asarray(s.data).tolist() for s in m.value.addressable_shards] for m in masks]
    json.dump({"devices": len(devices), "local": len(jax.local_devices()),
               "masks": [np.asarray(m.value).tolist() for m in masks],
               "scores": [np.asarray(s.score.value).tolist() for layer in pruned.layers
                          for s in getattr(layer, "slots", []) if s.score is not None],
               "shards_equal": all(s == shard[0] for shard in shards for s in shard)},
              open(out, "w"))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _children(tmp_path, processes, devices_per_process, code=_CHILD, criterion="magnitude"):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", CRITERION=criterion,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
    port = str(_free_port())
    outs = [str(tmp_path / f"out{i}.json") for i in range(processes)]
    children = [subprocess.Popen([sys.executable, "-c", code, str(processes), str(i), port,
                                  outs[i]], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for i in range(processes)]
    logs = [c.communicate(timeout=300)[0] for c in children]
    for child, log in zip(children, logs):
        assert child.returncode == 0, log[-3000:]
    return [json.load(open(out)) for out in outs]


def _check_exact(masks):
    for mask in masks:
        mask = np.asarray(mask)
        assert _zeros(mask) == _mask_math.num_pruned(mask.size, 0.8)


@needs_jax
@children
def test_data_parallel_on_two_devices_gives_the_same_masks_everywhere(tmp_path):
    (result,) = _children(tmp_path, processes=1, devices_per_process=2)
    assert result["devices"] == result["local"] == 2
    assert result["shards_equal"]
    _check_exact(result["masks"])


@needs_jax
@children
@pytest.mark.parametrize("criterion", ["magnitude", "taylor"])
def test_two_processes_on_localhost_agree_on_every_mask(criterion, tmp_path):
    # Taylor: each process sees the gradient of the global batch, so both
    # accumulate the same scores.
    results = _children(tmp_path, processes=2, devices_per_process=1, criterion=criterion)
    for result in results:
        assert result["devices"] == 2 and result["local"] == 1
        assert result["shards_equal"]
        _check_exact(result["masks"])
    # Each process trained on its own shard; the masks come from the shared
    # (all-reduced) weights, so both processes hold the same ones.
    assert results[0]["masks"] == results[1]["masks"]
    assert results[0]["scores"] == results[1]["scores"]
    assert len(results[0]["scores"]) == (2 if criterion == "taylor" else 0)
    assert all(np.count_nonzero(score) for score in results[0]["scores"])


_MODEL_PARALLEL = textwrap.dedent("""
    import json, os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import jax, keras, numpy as np
    import tfprune
    mesh = keras.distribution.DeviceMesh((1, 2), ["batch", "model"], jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*hidden/kernel"] = (None, "model")  # columns split over the two devices
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32, name="hidden"),
                              keras.layers.Dense(1, name="head")])
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.75, 0, 12))
    pruned.compile("adam", "mse")
    x = np.random.default_rng(0).random((128, 8)).astype("float32")
    pruned.fit(x, x.sum(1, keepdims=True), batch_size=16, epochs=2, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=3)])
    wrapper = pruned.get_layer("pruned_hidden")
    kernel, mask = wrapper.layer.kernel, wrapper.masks[0]
    shards = sorted(mask.value.addressable_shards, key=lambda s: s.index[1].start or 0)
    json.dump({
        "kernel_spec": str(kernel.value.sharding.spec),
        "mask_spec": str(mask.value.sharding.spec),
        "shard_shapes": [list(s.data.shape) for s in shards],
        "mask": np.asarray(mask.value).tolist(),
        "from_shards": np.concatenate([np.asarray(s.data) for s in shards], axis=1).tolist(),
        "kernel_zero_where_pruned": bool(np.all(np.asarray(kernel.value)[np.asarray(mask.value) == 0] == 0)),
    }, open(sys.argv[4], "w"))
""")


@needs_jax
@children
def test_model_parallel_shards_each_mask_like_its_kernel(tmp_path):
    (result,) = _children(tmp_path, processes=1, devices_per_process=2, code=_MODEL_PARALLEL)
    assert result["kernel_spec"] == result["mask_spec"] == "P(None, 'model')"
    assert result["shard_shapes"] == [[8, 16], [8, 16]]  # each device: its own 16 columns
    assert result["from_shards"] == result["mask"]
    assert result["kernel_zero_where_pruned"]
    assert _zeros(result["mask"]) == _mask_math.num_pruned(8 * 32, 0.75)


@on_jax
def test_export_from_jax_runs_in_a_tensorflow_process(tmp_path):
    x, y = _data()
    pruned = tfprune.prune(_model(), tfprune.schedules.PolynomialDecay(0.0, 0.8, 0, 16))
    pruned.compile("adam", "mse")
    pruned.fit(x, y, batch_size=32, epochs=2, verbose=0,
               callbacks=[tfprune.PruningCallback(update_every=4)])
    result = tfprune.export.tflite(pruned, str(tmp_path / "m.tflite"), sample_inputs=x[:8])
    assert result.max_abs_error is not None and result.sparse_tensors
    assert result.sparsity == pytest.approx(0.8, abs=0.01)
    # Errors come back as they are raised there; nothing is left behind.
    child = _backend._child_process.process
    with pytest.raises(ValueError, match="Received: path="):
        tfprune.export.tflite(pruned, str(tmp_path / "m.tflite"))
    # The same TensorFlow process served both; one that stopped is started
    # again for the next export.
    assert _backend._child_process.process is child and child.poll() is None
    child.kill()
    child.wait()
    saved = tfprune.export.saved_model(pruned, str(tmp_path / "saved"))
    assert saved.max_abs_error is not None and os.path.isdir(saved.path)
    assert _backend._child_process.process is not child
    with pytest.raises(TypeError, match="Received: representative_data="):
        tfprune.export.tflite(pruned, str(tmp_path / "q.tflite"), quantize="int8",
                              representative_data=lambda: iter([x[:1]]))
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "saved"]
