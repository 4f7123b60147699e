"""What both sides of the benchmark share: tasks, data, models, metrics.

This module imports neither Keras nor TensorFlow: every function that builds
or trains a model takes the Keras module as its first argument (`keras` for
Keras 3 on the tfprune side, `tf_keras` on the tfmot side), so the same
architectures, data splits, optimizers and schedules are used in both
processes. Weights travel between the two as `.npz` files of
`model.get_weights()`, whose order is the same in Keras 3 and tf_keras for
the layers used here (Dense: kernel, bias; LSTM: kernel, recurrent kernel,
bias).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import io
import math
import os
import subprocess
import sys
import tarfile
import time

import numpy as np

#: Target sparsities of the quality benchmark.
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
QUICK_SPARSITIES = (0.5, 0.9)
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
#: Prunable weights of the models of the mask-update benchmark.
UPDATE_SIZES = (10_000, 1_000_000, 10_000_000, 100_000_000)
QUICK_UPDATE_SIZES = (10_000, 1_000_000)
UPDATE_LAYERS = 4  # Dense layers per model of the mask-update benchmark
UPDATE_SPARSITY = 0.9


def update_repeats(n_weights: int, repeats: int) -> int:
    """Timed calls of the mask-update benchmark at `n_weights`: at least
    `repeats`, more for small models (about 2M weights updated in all, up to
    200 calls: a 10k-weight update takes about a millisecond, and the
    machine's noise needs many of them)."""
    return max(repeats, min(200, 2_000_000 // max(n_weights, 1)))


def log(message: str) -> None:
    """Progress line on stdout, flushed at once (both processes use it)."""
    print(message, flush=True)
    sys.stdout.flush()


# ------------------------------------------------------------------ tasks
@dataclasses.dataclass
class TaskConfig:
    """One benchmark task: data, model and training recipe.

    The recipe is the same in both frameworks: Adam(`learning_rate`),
    `batch_size`, `dense_epochs` of dense training, then `finetune_epochs`
    of pruning from the dense weights with a cubic `PolynomialDecay` from 0
    at step 0 to the target at `end_step`, masks updated every
    `update_every` steps (tfmot's `frequency`).
    """

    name: str
    title: str
    metric: str  # "rmse" (in target units) or "accuracy"
    metric_label: str
    batch_size: int
    learning_rate: float
    dense_epochs: int
    finetune_epochs: int
    update_every: int
    end_step: int
    max_train: int | None = None  # cap on training rows (None: all)
    max_samples: int | None = None  # PM2.5: windows per split

    def __post_init__(self):
        if self.end_step % self.update_every:
            raise ValueError(
                "`end_step` must be a multiple of `update_every`, or tfmot never "
                f"reaches the final sparsity. Received: end_step={self.end_step}"
            )

    @property
    def higher_is_better(self) -> bool:
        return self.metric == "accuracy"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> TaskConfig:
        return cls(**config)


_FULL = {
    "housing": TaskConfig(
        "housing", "California housing MLP 16-128-64-1", "rmse", "test RMSE (USD)",
        batch_size=128, learning_rate=1e-3, dense_epochs=20, finetune_epochs=8,
        update_every=50, end_step=500),
    "pm25": TaskConfig(
        "pm25", "Beijing PM2.5 LSTM(32), 24 h windows", "rmse", "test RMSE (ug/m3)",
        batch_size=128, learning_rate=2e-3, dense_epochs=12, finetune_epochs=8,
        update_every=20, end_step=200, max_samples=6000),
    "digits": TaskConfig(
        "digits", "Digits MLP 64-256-128-10", "accuracy", "test accuracy",
        batch_size=32, learning_rate=1e-3, dense_epochs=30, finetune_epochs=15,
        update_every=20, end_step=300),
}
_QUICK = {
    "housing": dict(dense_epochs=2, finetune_epochs=2, update_every=5, end_step=20, max_train=2000),
    "pm25": dict(dense_epochs=2, finetune_epochs=3, update_every=2, end_step=8, max_samples=500),
    "digits": dict(dense_epochs=3, finetune_epochs=2, update_every=10, end_step=40),
}
TASKS = tuple(_FULL)
#: Tasks of the training-cost measurements only (no quality table).
_COST_ONLY = {
    "digits_cnn": TaskConfig(
        "digits_cnn", "Digits CNN conv16-conv32-dense10 on 8x8 images", "accuracy",
        "test accuracy", batch_size=32, learning_rate=1e-3, dense_epochs=20,
        finetune_epochs=10, update_every=20, end_step=300),
}
_QUICK["digits_cnn"] = dict(dense_epochs=2, finetune_epochs=2, update_every=10, end_step=40)
#: Tasks of the training-cost measurements: an MLP, an LSTM and a CNN.
COST_TASKS = ("housing", "pm25", "digits_cnn")


def task_configs(quick: bool = False, names=TASKS) -> dict:
    """`{name: TaskConfig}` of the full (or quick) recipe."""
    known = {**_FULL, **_COST_ONLY}
    out = {}
    for name in names:
        if name not in known:
            raise ValueError(
                f"Unknown task; expected one of {tuple(known)}. Received: task={name!r}")
        out[name] = dataclasses.replace(known[name], **(_QUICK[name] if quick else {}))
    return out


def load_data(cfg: TaskConfig):
    """The task's `Dataset` (fixed split seed 0; training rows capped)."""
    from examples import datasets

    if cfg.name == "housing":
        data = datasets.load_housing(seed=0)
    elif cfg.name == "pm25":
        data = datasets.load_pm25(window=24, horizon=1, seed=0, max_samples=cfg.max_samples)
    else:
        data = datasets.load_digits(seed=0)
    if cfg.max_train is not None:
        data = dataclasses.replace(
            data, x_train=data.x_train[: cfg.max_train], y_train=data.y_train[: cfg.max_train]
        )
    return data


def build_model(keras, cfg: TaskConfig, input_shape):
    """The task's model (unbuilt weights random), in the given Keras module."""
    layers = keras.layers
    if cfg.name == "housing":
        body = [layers.Dense(128, activation="relu"), layers.Dense(64, activation="relu"),
                layers.Dense(1)]
    elif cfg.name == "pm25":
        body = [layers.LSTM(32), layers.Dense(1)]
    elif cfg.name == "digits_cnn":
        body = [layers.Reshape((8, 8, 1)),
                layers.Conv2D(16, 3, padding="same", activation="relu"),
                layers.Conv2D(32, 3, activation="relu"), layers.Flatten(),
                layers.Dense(10, activation="softmax")]
    else:
        body = [layers.Dense(256, activation="relu"), layers.Dense(128, activation="relu"),
                layers.Dense(10, activation="softmax")]
    return keras.Sequential([keras.Input(tuple(input_shape))] + body, name=cfg.name)


def compile_model(keras, model, cfg: TaskConfig) -> None:
    loss = "sparse_categorical_crossentropy" if cfg.metric == "accuracy" else "mse"
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss)


def steps_per_epoch(cfg: TaskConfig, n_train: int) -> int:
    return math.ceil(n_train / cfg.batch_size)


def evaluate(cfg: TaskConfig, data, predictions) -> float:
    """Test metric: accuracy, or RMSE in the target's units."""
    predictions = np.asarray(predictions)
    if cfg.metric == "accuracy":
        return float(np.mean(np.argmax(predictions, axis=-1) == data.y_test))
    error = data.to_target_units(predictions) - data.to_target_units(data.y_test)
    return float(np.sqrt(np.mean(np.square(error))))


def kernel_sparsity(arrays) -> float:
    """Fraction of zeros over the weight arrays of rank >= 2 (kernels)."""
    kernels = [np.asarray(a) for a in arrays if np.ndim(a) >= 2]
    total = sum(a.size for a in kernels)
    zeros = sum(a.size - np.count_nonzero(a) for a in kernels)
    return zeros / total if total else 0.0


def save_weights(path: str, arrays) -> None:
    np.savez(path, *[np.asarray(a) for a in arrays])


def file_sizes(path: str) -> dict:
    """`{"bytes", "gzip_bytes"}` of a file, or of a folder's files (the
    folder is gzipped as one tar archive); gzip level 9 in both cases."""
    if os.path.isdir(path):
        raw = sum(os.path.getsize(os.path.join(root, f)) for root, _, names in os.walk(path)
                  for f in names)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=os.path.basename(path))
        data = buffer.getvalue()
    else:
        raw = os.path.getsize(path)
        with open(path, "rb") as f:
            data = f.read()
    return {"bytes": raw, "gzip_bytes": len(gzip.compress(data, compresslevel=9, mtime=0))}


def load_weights(path: str) -> list:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


# ----------------------------------------------------- timing and models
def epoch_timer(keras):
    """A callback recording each epoch's wall time in `.times` (seconds).

    Put it last in the callback list, so that its epoch ends after the
    other callbacks' `on_epoch_end` (tfmot re-masks weights there).
    """

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self._start = None

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def time_fits(keras, fits: dict, x, y, batch_size: int, epochs: int, rounds: int) -> dict:
    """Epoch times of alternated fits: `fits` maps a name to `(model,
    callbacks_factory)`; each round fits every model `1 + epochs` epochs in
    turn, and the warm-up epoch of each fit is dropped. Returns `{name:
    [seconds, ...]}`."""
    times = {name: [] for name in fits}
    for _ in range(rounds):
        for name, (model, callbacks) in fits.items():
            timer = epoch_timer(keras)
            model.fit(x, y, batch_size=batch_size, epochs=1 + epochs,
                      callbacks=callbacks() + [timer], verbose=0)
            times[name].extend(timer.times[1:])
    return times


def update_width(n_weights: int, n_layers: int = UPDATE_LAYERS) -> int:
    """Width of the square Dense layers that hold about `n_weights`."""
    return int(round(math.sqrt(n_weights / n_layers)))


def big_dense_model(keras, n_weights: int, n_layers: int = UPDATE_LAYERS):
    """A stack of `n_layers` square Dense layers, `n_weights` kernels in all."""
    width = update_width(n_weights, n_layers)
    layers = [keras.layers.Dense(width, name=f"dense_{i}") for i in range(n_layers)]
    return keras.Sequential([keras.Input((width,))] + layers, name=f"stack_{n_weights}")


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def timed(fn, repeats: int, warmup: int = 1) -> list:
    """Wall times (seconds) of `repeats` calls of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def provenance() -> dict:
    """What produced a saved output: tfprune's version (read from the
    source, without importing it) and the git commit of the working tree
    (`-dirty` when it has uncommitted changes; None outside a checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    version = None
    with open(os.path.join(root, "tfprune", "__init__.py")) as f:
        for line in f:
            if line.startswith("__version__"):
                version = line.split("=", 1)[1].strip().strip("\"'")
    commit = None
    try:
        git = ["git", "-C", root]
        commit = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += "-dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"tfprune": version, "commit": commit}


def save_result(result: dict, table: str, *, start: float, command: str, quick: bool,
                out: str) -> dict:
    """Adds the Markdown `table` the docs quote and the run's facts (date,
    cores, duration, command, tfprune version and commit) to `result`,
    prints the table and, unless `quick`, writes `result` to `out`
    atomically. Returns `result`."""
    result["table"] = table
    print(table)
    result.update(provenance())
    result.update(date=time.strftime("%Y-%m-%d"), quick=quick, cpus=os.cpu_count(),
                  seconds=round(time.perf_counter() - start, 1),
                  command=command + (" --quick" if quick else ""))
    if not quick:
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.replace(tmp, out)
        print(f"wrote {os.path.relpath(out)}")
    return result
