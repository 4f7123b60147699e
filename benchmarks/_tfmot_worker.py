"""The tfmot side of the benchmarks, run in its own interpreter.

Usage (the harness does this; the interpreter must have tensorflow, tf_keras
and tensorflow-model-optimization, and the environment
`TF_USE_LEGACY_KERAS=1`):

    python -m benchmarks._tfmot_worker JOB.json RESULT.json

`JOB.json` holds `{"kind": ..., ...}`; the worker writes its results as JSON
to `RESULT.json` and progress lines to stdout. Kinds: "versions", "quality",
"cost", "update", "artifacts" (see each handler). The recipes come from
`benchmarks._models`, shared with the tfprune side.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

from benchmarks import _models
from benchmarks._models import log

FRAMEWORK = "tfmot"


def _imports():
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("benchmarks._tfmot_worker must run with TF_USE_LEGACY_KERAS=1.")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    return tf, tf_keras, tfmot


tf, tf_keras, tfmot = _imports()
sparsity_api = tfmot.sparsity.keras


def versions(job) -> dict:
    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "tf_keras": tf_keras.__version__,
        "tfmot": getattr(tfmot, "__version__", "unknown"),
    }


# -------------------------------------------------------------- training
def _schedule(cfg, sparsity, end_step=None, frequency=None):
    return sparsity_api.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=cfg.end_step if end_step is None else end_step,
        power=3,
        frequency=cfg.update_every if frequency is None else frequency,
    )


def _model(cfg, data, weights=None):
    model = _models.build_model(tf_keras, cfg, data.x_train.shape[1:])
    if weights is not None:
        model.set_weights(weights)
    return model


def _finetune(cfg, data, weights, sparsity, seed):
    """Prunes the dense weights to `sparsity` while fine-tuning; stripped."""
    tf_keras.utils.set_random_seed(seed)
    pruned = sparsity_api.prune_low_magnitude(
        _model(cfg, data, weights), pruning_schedule=_schedule(cfg, sparsity)
    )
    _models.compile_model(tf_keras, pruned, cfg)
    pruned.fit(
        data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=cfg.finetune_epochs,
        callbacks=[sparsity_api.UpdatePruningStep()], verbose=0,
    )
    return sparsity_api.strip_pruning(pruned)


def _record(cfg, data, model, seed, method, target, seconds) -> dict:
    predictions = model.predict(data.x_test, batch_size=1024, verbose=0)
    return {
        "task": cfg.name, "seed": seed, "framework": FRAMEWORK, "method": method,
        "target": target, "metric": _models.evaluate(cfg, data, predictions),
        "sparsity": _models.kernel_sparsity(model.get_weights()), "seconds": seconds,
    }


def quality(job) -> list:
    """Job: `tasks` {name: config}, `runs` [{task, seed, weights}],
    `sparsities`. Returns one record per (run, sparsity), plus the dense
    weights evaluated in tf_keras (method "dense")."""
    configs = {k: _models.TaskConfig.from_dict(v) for k, v in job["tasks"].items()}
    data_cache, records = {}, []
    for run in job["runs"]:
        cfg = configs[run["task"]]
        if cfg.name not in data_cache:
            data_cache[cfg.name] = _models.load_data(cfg)
        data, weights, seed = data_cache[cfg.name], _models.load_weights(run["weights"]), run["seed"]
        records.append(_record(cfg, data, _model(cfg, data, weights), seed, "dense", 0.0, 0.0))
        for sparsity in job["sparsities"]:
            start = time.perf_counter()
            final = _finetune(cfg, data, weights, sparsity, seed)
            rec = _record(cfg, data, final, seed, "magnitude", sparsity, time.perf_counter() - start)
            records.append(rec)
            log(f"  [tfmot] {cfg.name} seed {seed} magnitude {sparsity:.0%}: "
                f"{cfg.metric}={rec['metric']:.4g} sparsity={rec['sparsity']:.3f} "
                f"({rec['seconds']:.1f} s)")
            tf_keras.backend.clear_session()
    return records


def cost(job) -> list:
    """Job: `tasks`, `sparsity`, `epochs` (timed epochs per fit, after one
    warm-up epoch), `rounds` (dense/pruned fits alternated), `frequencies`
    (mask update every that many steps, or "constant": a `ConstantSparsity`
    that sets the masks at step 0 only, its step check still in every
    step). Returns per task and frequency the epoch times of the unpruned
    and the pruned fit."""
    out = []
    for name, config in job["tasks"].items():
        cfg = _models.TaskConfig.from_dict(config)
        data = _models.load_data(cfg)
        tf_keras.utils.set_random_seed(0)
        dense = _model(cfg, data)
        _models.compile_model(tf_keras, dense, cfg)
        steps = _models.steps_per_epoch(cfg, len(data.x_train))
        total = steps * (1 + job["epochs"]) * job["rounds"]
        for every in job.get("frequencies", [cfg.update_every]):
            if every == "constant":
                schedule = sparsity_api.ConstantSparsity(job["sparsity"], 0, end_step=0,
                                                         frequency=1)
            else:  # the schedule keeps updating masks through every timed epoch
                end = (total // every + 1) * every
                schedule = _schedule(cfg, job["sparsity"], end_step=end, frequency=every)
            pruned = sparsity_api.prune_low_magnitude(
                _model(cfg, data, dense.get_weights()), pruning_schedule=schedule)
            _models.compile_model(tf_keras, pruned, cfg)
            times = _models.time_fits(tf_keras, {
                "dense": (dense, list),
                "pruned": (pruned, lambda: [sparsity_api.UpdatePruningStep()]),
            }, data.x_train, data.y_train, cfg.batch_size, job["epochs"], job["rounds"])
            rec = {"task": name, "framework": FRAMEWORK, "every": every,
                   "steps_per_epoch": steps,
                   "dense_epoch_s": times["dense"], "pruned_epoch_s": times["pruned"]}
            rec["ratio"] = _models.median(times["pruned"]) / _models.median(times["dense"])
            log(f"  [tfmot] {name}, update every {every}: dense "
                f"{_models.median(times['dense']):.3f} s/epoch, pruned "
                f"{_models.median(times['pruned']):.3f} s/epoch, ratio {rec['ratio']:.2f}")
            out.append(rec)
        tf_keras.backend.clear_session()
    return out


# ------------------------------------------------------------ mask update
def update(job) -> list:
    """Job: `sizes` (prunable weights per model), `repeats`, `sparsity`.

    One update of every mask of the model, as tfmot does it: for each
    wrapper, `pruning_obj.conditional_mask_update()` (threshold by `top_k`
    over the whole tensor, mask assign) and `pruning_obj.weight_mask_op()`
    (weights times mask). Timed eagerly and inside a `tf.function` (how it
    runs in training). The step is set so that every call is due."""
    out = []
    for n in job["sizes"]:
        model = _models.big_dense_model(tf_keras, n)
        pruned = sparsity_api.prune_low_magnitude(
            model, pruning_schedule=sparsity_api.ConstantSparsity(job["sparsity"], 0, frequency=1)
        )
        del model
        gc.collect()
        wrappers = [layer for layer in pruned.layers if hasattr(layer, "pruning_obj")]
        for wrapper in wrappers:
            wrapper.pruning_step.assign(0)

        def run():
            for wrapper in wrappers:
                wrapper.pruning_obj.conditional_mask_update()
                wrapper.pruning_obj.weight_mask_op()

        graph = tf.function(run)
        calls = _models.update_repeats(n, job["repeats"])
        eager_times = _models.timed(run, calls)
        graph_times = _models.timed(graph, calls)
        masks = [mask.numpy() for w in wrappers for _, mask, _ in w.pruning_vars]
        n_weights = sum(m.size for m in masks)
        achieved = 1.0 - sum(float(m.sum()) for m in masks) / n_weights
        for mode, times in (("eager", eager_times), ("tf.function", graph_times)):
            out.append({"size": n, "n_weights": n_weights, "framework": FRAMEWORK,
                        "mode": mode, "times": times, "median_s": _models.median(times),
                        "sparsity": achieved})
            log(f"  [tfmot] update {n:,} weights, {mode}: {_models.median(times) * 1e3:.1f} ms")
        del pruned, wrappers, masks, graph
        tf_keras.backend.clear_session()
        gc.collect()
    return out


# --------------------------------------------------------------- artifacts
def artifacts(job) -> dict:
    """Job: `task` config, `weights` (dense .npz), `sparsity`, `seed`,
    `out_dir`. tfmot's standard flow: prune while fine-tuning,
    `strip_pruning`, then TFLiteConverter with EXPERIMENTAL_SPARSITY (and
    DEFAULT for "dynamic"). Writes the files; returns their sizes."""
    cfg = _models.TaskConfig.from_dict(job["task"])
    data = _models.load_data(cfg)
    weights = _models.load_weights(job["weights"])
    final = _finetune(cfg, data, weights, job["sparsity"], job["seed"])
    rec = _record(cfg, data, final, job["seed"], "magnitude", job["sparsity"], 0.0)
    out_dir = job["out_dir"]
    saved_model = os.path.join(out_dir, "tfmot_saved_model")
    tf.saved_model.save(final, saved_model)
    files = [{"variant": "sparse", "format": "saved_model", "quantize": None,
              "path": saved_model, **_models.file_sizes(saved_model)}]
    for quantize in (None, "dynamic"):
        converter = tf.lite.TFLiteConverter.from_keras_model(final)
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY] + (
            [tf.lite.Optimize.DEFAULT] if quantize else [])
        path = os.path.join(out_dir, f"tfmot_sparse_{quantize or 'float32'}.tflite")
        with open(path, "wb") as f:
            f.write(converter.convert())
        files.append({"variant": "sparse", "format": "tflite", "quantize": quantize,
                      "path": path, **_models.file_sizes(path)})
    log(f"  [tfmot] artifacts: {cfg.metric}={rec['metric']:.4g}, "
        + ", ".join(f"{f['format']}/{f['quantize'] or 'float32'} {f['bytes']:,} B" for f in files))
    return {"record": rec, "files": files}


HANDLERS = {"versions": versions, "quality": quality, "cost": cost, "update": update,
            "artifacts": artifacts}


def main(argv) -> int:
    if len(argv) != 3:
        raise SystemExit("usage: python -m benchmarks._tfmot_worker JOB.json RESULT.json")
    with open(argv[1]) as f:
        job = json.load(f)
    result = HANDLERS[job["kind"]](job)
    with open(argv[2], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
