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
#: Mask update frequencies of the cost benchmark; "constant": masks set at
#: the first step (a `Constant` schedule), then never changed.
FREQUENCIES = (1, 10, 50, 100, "constant")


def _cost_schedule(every, sparsity, total):
    if every == "constant":
        return tfprune.schedules.Constant(sparsity, begin_step=0), 100
    end = (total // every + 1) * every  # masks keep changing in every timed epoch
    return tfprune.schedules.PolynomialDecay(0.0, sparsity, 0, end, power=3), every


def cost(configs: dict, sparsity: float, epochs: int, rounds: int,
         frequencies=FREQUENCIES, in_step="auto") -> list:
    """Epoch times of an unpruned and a pruned `fit` of the same model and
    data, for each mask update frequency (one warm-up epoch per fit dropped;
    dense and pruned fits alternated `rounds` times). With a number, the
    schedule updates the masks every that many steps through every timed
    epoch; with "constant", the masks are fixed from the first step.
    `in_step`: the callback's (where a due update runs)."""
    out = []
    for name, cfg in configs.items():
        data = _models.load_data(cfg)
        keras.utils.set_random_seed(0)
        dense = _model(cfg, data)
        _models.compile_model(keras, dense, cfg)
        steps = _models.steps_per_epoch(cfg, len(data.x_train))
        total = steps * (1 + epochs) * rounds
        for every in frequencies:
            schedule, update_every = _cost_schedule(every, sparsity, total)
            pruned = tfprune.prune(_model(cfg, data, dense.get_weights()), schedule)
            _models.compile_model(keras, pruned, cfg)
            times = _models.time_fits(keras, {
                "dense": (dense, list),
                "pruned": (pruned, lambda: [tfprune.PruningCallback(update_every,
                                                                    in_step=in_step)]),
            }, data.x_train, data.y_train, cfg.batch_size, epochs, rounds)
            rec = {"task": name, "framework": FRAMEWORK, "every": every, "in_step": in_step,
                   "steps_per_epoch": steps,
                   "dense_epoch_s": times["dense"], "pruned_epoch_s": times["pruned"]}
            rec["ratio"] = _models.median(times["pruned"]) / _models.median(times["dense"])
            log(f"  [tfprune] {name}, update every {every}: dense "
                f"{_models.median(times['dense']):.3f} s/epoch, pruned "
                f"{_models.median(times['pruned']):.3f} s/epoch, ratio {rec['ratio']:.2f}")
            out.append(rec)
            del pruned
        keras.backend.clear_session(free_memory=False)
    return out


# ------------------------------------------------------------ mask update
def _strategy(mode):
    from tfprune import granularity
    from tfprune import strategies

    return {
        "callback": None,
        "unchanged": None,
        "global": strategies.Strategy("magnitude", "unstructured", strategies.Global()),
        "2:4": strategies.Strategy("magnitude", granularity.NM(2, 4), "uniform"),
        "units": strategies.Strategy("l2_norm", granularity.Units(), "uniform"),
    }[mode]


UPDATE_MODES = ("callback", "global", "2:4", "units", "unchanged")


def update(sizes, repeats: int, sparsity: float, global_max: int = 10**9,
           modes=UPDATE_MODES) -> list:
    """Cost of one update of every mask of a stack of big Dense layers.

    Each mode is the path a user runs: `PruningCallback.update_masks` at a
    due step (one compiled call: scores, counts, masks, weights zeroed,
    zeros counted) on a model pruned with the mode's strategy: "callback"
    (the default per-layer magnitude), "global" (one magnitude ranking over
    all tensors; only up to `global_max` weights), "2:4" (N:M) and "units"
    (whole units by L2 norm). N:M prunes at most 50%, so it is timed at
    `min(sparsity, 0.5)`."""
    out = []
    for n in sizes:
        calls = _models.update_repeats(n, repeats)
        for mode in modes:
            if mode == "global" and n > global_max:
                continue
            target = min(sparsity, 0.5) if mode == "2:4" else sparsity
            model = _models.big_dense_model(keras, n)
            # Updates due at every step, each to a higher sparsity (so that
            # every timed call selects anew), the last at the target; for
            # "unchanged", the target at every step (no mask can change).
            start, end = (target, 10**9) if mode == "unchanged" else (0.9 * target, calls + 1)
            pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(
                start, target, 0, end, power=1), strategy=_strategy(mode))
            del model
            gc.collect()
            pruned.compile(optimizer="sgd", loss="mse")
            wrappers = [w for w in pruned.layers if isinstance(w, tfprune.PruningWrapper)]
            callback = tfprune.PruningCallback(update_every=1)
            callback.set_model(pruned)
            callback.on_train_begin()
            clock = iter(range(1, 10**9))
            times = _models.timed(lambda: callback.update_masks(next(clock)), calls)
            n_weights = sum(int(np.prod(m.shape)) for w in wrappers for m in w.masks)
            zeros = sum(int(np.size(m) - np.count_nonzero(m.numpy())) for w in wrappers
                        for m in w.masks)
            out.append({"size": n, "n_weights": n_weights, "framework": FRAMEWORK, "mode": mode,
                        "times": times, "median_s": _models.median(times),
                        "sparsity": zeros / n_weights, "target": target})
            log(f"  [tfprune] update {n:,} weights, {mode}: {_models.median(times) * 1e3:.2f} ms")
            callback.on_train_end()
            del pruned, wrappers, callback
            keras.backend.clear_session(free_memory=True)
            gc.collect()
    return out


# ------------------------------------------------------ cost per layer
def layer_cost(repeats: int, every: int = 10, epochs: int = 3, steps: int = 40) -> dict:
    """The cost of a many-layer CNN: keras.applications MobileNetV2 (alpha
    0.35, 64x64 inputs, random weights, batch 32, random data). One update
    of every mask vs. one update of a single layer (the same call on a
    model where only that layer is pruned), and pruned/plain fit with the
    masks updated every `every` steps."""
    x = np.random.default_rng(0).random((steps * 32, 64, 64, 3), dtype=np.float32)
    y = np.random.default_rng(1).integers(0, 10, size=(steps * 32,))

    def build():
        keras.utils.set_random_seed(0)
        return keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35,
                                              weights=None, classes=10)

    def compile_(model):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")

    def one_update(pruned):
        compile_(pruned)
        callback = tfprune.PruningCallback(update_every=1)
        callback.set_model(pruned)
        callback.on_train_begin()
        clock = iter(range(1, 10**9))
        return _models.median(_models.timed(lambda: callback.update_masks(next(clock)),
                                            repeats))

    schedule = tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, 10**9)
    pruned = tfprune.prune(build(), schedule)
    n_layers = len([w for w in pruned.layers if isinstance(w, tfprune.PruningWrapper)])
    all_layers = one_update(pruned)
    single = one_update(tfprune.prune(build(), schedule, layers=["Conv1"]))
    keras.backend.clear_session(free_memory=True)
    dense = build()
    compile_(dense)
    total = steps * (1 + epochs) * 2
    schedule = tfprune.schedules.PolynomialDecay(0.0, 0.5, 0, (total // every + 1) * every)
    pruned = tfprune.prune(build(), schedule)
    compile_(pruned)
    times = _models.time_fits(keras, {
        "dense": (dense, list),
        "pruned": (pruned, lambda: [tfprune.PruningCallback(every)]),
    }, x, y, 32, epochs, 2)
    ratio = _models.median(times["pruned"]) / _models.median(times["dense"])
    log(f"  [tfprune] MobileNetV2: {n_layers} pruned layers, update {all_layers * 1e3:.1f} ms "
        f"(one layer {single * 1e3:.2f} ms), fit ratio at every {every}: {ratio:.2f}")
    return {"model": "MobileNetV2(alpha=0.35), 64x64x3, batch 32", "pruned_layers": n_layers,
            "update_all_s": all_layers, "update_one_layer_s": single, "every": every,
            "steps_per_epoch": steps, "dense_epoch_s": times["dense"],
            "pruned_epoch_s": times["pruned"], "ratio": ratio}
