"""The tfprune side of the benchmarks (Keras 3, in the main process).

Pruning methods plug in by name (`METHOD_NAMES`): "magnitude" (per-layer
magnitude with `tfprune.prune` + `PruningCallback`, the method tfmot also
has) and `tfprune.strategies.Strategy` objects built from `tfprune.criteria`
/ `tfprune.granularity`, passed as `tfprune.prune(..., strategy=...)`.
"""

from __future__ import annotations

import dataclasses
import gc
import time

import keras
import numpy as np

import tfprune
from benchmarks import _models
from benchmarks._models import log

FRAMEWORK = "tfprune"


# ---------------------------------------------------------------- methods
@dataclasses.dataclass(frozen=True)
class Method:
    """A tfprune pruning method of the quality benchmark.

    Attributes:
        name: short name used in tables and plots.
        description: one line for the report.
        strategy: `fn() -> tfprune.strategies.Strategy`, or None for the
            plain per-layer magnitude pruning of `PruningWrapper`.
        max_sparsity: highest sparsity the method can reach (2:4: 0.5).
    """

    name: str
    description: str
    strategy: object = None
    max_sparsity: float = 1.0


def _strategy_factories():
    """`{name: (description, factory, max_sparsity)}` of the strategy methods."""
    from tfprune import granularity
    from tfprune import strategies

    return {
        "global_magnitude": ("magnitude, one ranking over all layers (Global)",
                             lambda: strategies.Strategy("magnitude", "unstructured",
                                                         strategies.Global()), 1.0),
        "taylor": ("first-order Taylor |g*w|, per layer",
                   lambda: strategies.Strategy("taylor", "unstructured", "uniform"), 1.0),
        "movement": ("movement (Sanh et al.), per layer",
                     lambda: strategies.Strategy("movement", "unstructured", "uniform"), 1.0),
        "random": ("random scores, per layer (baseline)",
                   lambda: strategies.Strategy("random", "unstructured", "uniform"), 1.0),
        "2:4": ("magnitude, 2:4 (N:M) pattern, per layer",
                lambda: strategies.Strategy("magnitude", granularity.NM(2, 4), "uniform"), 0.5),
        "units": ("whole units by L2 norm (auto preset, units=True)",
                  lambda: strategies.auto(units=True), 1.0),
    }


METHOD_NAMES = ("magnitude", "global_magnitude", "taylor", "movement", "random", "2:4", "units")


def available_methods(names=METHOD_NAMES) -> tuple:
    """`(methods, skipped)`: the usable `Method`s among `names`, and
    `{name: reason}` for the others."""
    methods, skipped = [], {}
    factories = _strategy_factories()
    for name in names:
        if name == "magnitude":
            methods.append(Method("magnitude", "magnitude, per layer (PruningWrapper)"))
            continue
        if name not in factories:
            skipped[name] = f"unknown method {name!r}"
            continue
        description, factory, max_sparsity = factories[name]
        methods.append(Method(name, description, factory, max_sparsity))
    return methods, skipped


def apply_method(method: Method, model, schedule, update_every: int) -> tuple:
    """`(pruned model, callbacks)` for training `model` with `method`."""
    strategy = None if method.strategy is None else method.strategy()
    pruned = tfprune.prune(model, schedule, strategy=strategy)
    return pruned, [tfprune.PruningCallback(update_every=update_every)]


# ---------------------------------------------------------------- quality
def _model(cfg, data, weights=None):
    model = _models.build_model(keras, cfg, data.x_train.shape[1:])
    if weights is not None:
        model.set_weights(weights)
    return model


def _record(cfg, data, model, seed, method, target, seconds) -> dict:
    predictions = model.predict(data.x_test, batch_size=1024, verbose=0)
    return {
        "task": cfg.name, "seed": seed, "framework": FRAMEWORK, "method": method,
        "target": target, "metric": _models.evaluate(cfg, data, predictions),
        "sparsity": _models.kernel_sparsity(model.get_weights()), "seconds": seconds,
    }


def train_dense(cfg, data, seed: int) -> tuple:
    """Trains the dense model once; returns `(weights, record)`."""
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    model = _model(cfg, data)
    _models.compile_model(keras, model, cfg)
    model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=cfg.dense_epochs,
              verbose=0)
    rec = _record(cfg, data, model, seed, "dense", 0.0, time.perf_counter() - start)
    log(f"  [tfprune] {cfg.name} seed {seed} dense: {cfg.metric}={rec['metric']:.4g} "
        f"({rec['seconds']:.1f} s)")
    return model.get_weights(), rec


def finetune(cfg, data, weights, method: Method, sparsity: float, seed: int):
    """Prunes the dense weights to `sparsity` while fine-tuning; stripped."""
    keras.utils.set_random_seed(seed)
    schedule = tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, cfg.end_step, power=3)
    pruned, callbacks = apply_method(method, _model(cfg, data, weights), schedule,
                                     cfg.update_every)
    _models.compile_model(keras, pruned, cfg)
    pruned.fit(data.x_train, data.y_train, batch_size=cfg.batch_size,
               epochs=cfg.finetune_epochs, callbacks=callbacks, verbose=0)
    return tfprune.strip(pruned)


def prune_runs(cfg, data, weights, seed, methods, sparsities) -> list:
    """One record per (method, sparsity) the method can reach."""
    records = []
    for method in methods:
        for sparsity in sparsities:
            if sparsity > method.max_sparsity + 1e-9:
                continue
            start = time.perf_counter()
            final = finetune(cfg, data, weights, method, sparsity, seed)
            rec = _record(cfg, data, final, seed, method.name, sparsity,
                          time.perf_counter() - start)
            records.append(rec)
            log(f"  [tfprune] {cfg.name} seed {seed} {method.name} {sparsity:.0%}: "
                f"{cfg.metric}={rec['metric']:.4g} sparsity={rec['sparsity']:.3f} "
                f"({rec['seconds']:.1f} s)")
            keras.backend.clear_session(free_memory=False)
    return records


# ------------------------------------------------------------------ cost
def cost(configs: dict, sparsity: float, epochs: int, rounds: int) -> list:
    """Epoch times of an unpruned and a pruned `fit` of the same model and
    data (one warm-up epoch per fit dropped; fits alternated `rounds` times);
    the schedule keeps updating masks through every timed epoch."""
    out = []
    for name, cfg in configs.items():
        data = _models.load_data(cfg)
        keras.utils.set_random_seed(0)
        dense = _model(cfg, data)
        steps = _models.steps_per_epoch(cfg, len(data.x_train))
        total = steps * (1 + epochs) * rounds
        end = (total // cfg.update_every + 1) * cfg.update_every
        schedule = tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, end, power=3)
        pruned = tfprune.prune(dense, schedule)
        for model in (dense, pruned):
            _models.compile_model(keras, model, cfg)
        times = {"dense": [], "pruned": []}
        for _ in range(rounds):
            for kind, model in (("dense", dense), ("pruned", pruned)):
                timer = _models.epoch_timer(keras)
                extra = [tfprune.PruningCallback(cfg.update_every)] if kind == "pruned" else []
                model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size,
                          epochs=1 + epochs, callbacks=extra + [timer], verbose=0)
                times[kind].extend(timer.times[1:])
        rec = {"task": name, "framework": FRAMEWORK, "steps_per_epoch": steps,
               "dense_epoch_s": times["dense"], "pruned_epoch_s": times["pruned"]}
        rec["ratio"] = _models.median(times["pruned"]) / _models.median(times["dense"])
        log(f"  [tfprune] {name}: dense {_models.median(times['dense']):.3f} s/epoch, pruned "
            f"{_models.median(times['pruned']):.3f} s/epoch, ratio {rec['ratio']:.2f}")
        out.append(rec)
        keras.backend.clear_session(free_memory=False)
    return out


# ------------------------------------------------------------ mask update
def update(sizes, repeats: int, sparsity: float, global_max: int = 10**9) -> list:
    """Cost of one update of every mask of a stack of big Dense layers.

    Modes: "prune_to" (`wrapper.prune_to` on every wrapper: per-layer
    magnitude, masks and weights assigned), "callback"
    (`PruningCallback.update_masks` at a due step: the same plus the
    sparsity accounting) and, when strategies exist and the model has at
    most `global_max` weights, "global" (a `Global` magnitude plan: one
    ranking over all tensors, then assign)."""
    out = []
    has_global = "global_magnitude" in [m.name for m in available_methods()[0]]
    for n in sizes:
        model = _models.big_dense_model(keras, n)
        pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, 10**9))
        del model
        gc.collect()
        pruned.compile(optimizer="sgd", loss="mse")
        wrappers = [layer for layer in pruned.layers if isinstance(layer, tfprune.PruningWrapper)]
        runs = {"prune_to": lambda: [w.prune_to(sparsity) for w in wrappers]}
        callback = tfprune.PruningCallback(update_every=1)
        callback.set_model(pruned)
        callback.on_train_begin()
        clock = iter(range(1, 10**9))
        runs["callback"] = lambda: callback.update_masks(next(clock))
        if has_global and n <= global_max:
            from tfprune import strategies

            plan = strategies.Strategy("magnitude", "unstructured", strategies.Global()).plan(pruned)
            slots = {id(pw.variable): m for w in wrappers for pw, m in zip(w.pruned_weights, w.masks)}
            slots = [slots[id(pw.variable)] for pw in plan.weights]

            def run_global():
                masks = plan.compute_masks(sparsity, previous=[keras.ops.convert_to_tensor(m) for m in slots])
                for pw, slot, mask in zip(plan.weights, slots, masks):
                    slot.assign(keras.ops.cast(mask, slot.dtype))
                    pw.variable.assign(pw.variable.value * keras.ops.cast(mask, pw.variable.dtype))

            runs["global"] = run_global
        n_weights = sum(int(np.prod(m.shape)) for w in wrappers for m in w.masks)
        for mode, fn in runs.items():
            times = _models.timed(fn, repeats)
            zeros = sum(int(np.size(m) - np.count_nonzero(m.numpy())) for w in wrappers
                        for m in w.masks)
            out.append({"size": n, "n_weights": n_weights, "framework": FRAMEWORK, "mode": mode,
                        "times": times, "median_s": _models.median(times),
                        "sparsity": zeros / n_weights})
            log(f"  [tfprune] update {n:,} weights, {mode}: {_models.median(times) * 1e3:.1f} ms")
        callback.on_train_end()
        del pruned, wrappers, runs, callback
        keras.backend.clear_session(free_memory=True)
        gc.collect()
    return out
