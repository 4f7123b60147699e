"""tfmot's `UpdatePruningStep` and `PruningSummaries` callbacks.

The step is tfmot's: the training batch about to run, counted from 1 (the
optimizer's `iterations` + 1). Before each batch, every wrapper whose
`pruning_schedule(step)` says so gets its masks updated to the schedule's
sparsity (`PruningWrapper.prune_to`); a `sparsity_m_by_n` wrapper gets its
N:M masks once, at step 1. That is when tfmot's wrapper updates its masks,
inside its first call of the batch.
"""

from __future__ import annotations

import importlib.util

import keras
from keras import ops

from tfprune._base import backend
from tfprune._base.validation import received
from tfprune._masks.core import apply_mask
from tfprune._training import state as state_lib
from tfprune._training.wrapper import find_wrappers
from tfprune.compat.tfmot._wrapper import PruneLowMagnitude

__all__ = ["PruningSummaries", "UpdatePruningStep", "prunable_layers"]


def prunable_layers(model) -> list:
    """The `PruneLowMagnitude` wrappers of `model`, nested models included."""
    return [w for w in find_wrappers(model) if isinstance(w, PruneLowMagnitude)]


def _value(x):
    return ops.convert_to_numpy(x).item()


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates the masks of `PruneLowMagnitude` layers on their schedule.

    Required to train a model with pruning wrappers: training one without it
    raises tfmot's error. In a custom training loop, call its hooks as
    tfmot's guide does: `set_model(model)`, `on_train_begin()`, then
    `on_train_batch_begin(batch)` before each batch and `on_epoch_end(epoch)`
    after each epoch (the model needs an `optimizer`: its `iterations` are
    the clock).

    Example:

    ```python
    pruned.fit(x, y, epochs=2, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    ```
    """

    def __init__(self):
        super().__init__()
        self.prunable_layers = []
        self.step = 0

    def _clock(self) -> int:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "UpdatePruningStep counts steps with the model's optimizer: compile the model "
                "(or, in a custom loop, set `model.optimizer`) first. "
                f"Received: model={self.model.name}")
        backend.sync_state(self.model)
        return int(_value(optimizer.iterations))

    def on_train_begin(self, logs=None):
        self.prunable_layers = prunable_layers(self.model)
        if not self.prunable_layers:
            return
        steps = getattr(self.model, "steps_per_execution", 1) or 1
        if int(steps) != 1:
            raise ValueError(
                "UpdatePruningStep updates masks before each batch, as tfmot does, so it needs "
                f"`steps_per_execution=1`. Received: steps_per_execution={steps}")
        self.step = self._clock()
        state_lib.attach(self.prunable_layers)

    def on_train_batch_begin(self, batch, logs=None):
        if not self.prunable_layers:
            return
        self.step += 1
        synced = False
        asked = {}  # one answer per schedule: the wrappers of a model share one
        for layer in self.prunable_layers:
            if layer.sparsity_m_by_n is not None:
                m, n = layer.sparsity_m_by_n
                due, sparsity = self.step == 1, m / n
            else:
                key = id(layer.pruning_schedule)
                if key not in asked:
                    due, sparsity = layer.pruning_schedule(self.step)
                    asked[key] = bool(_value(due)), sparsity
                due, sparsity = asked[key]
            if not due:
                continue
            if not synced:
                backend.sync_state(self.model)
                synced = True
            layer.prune_to(float(_value(sparsity)))

    def on_epoch_end(self, batch, logs=None):  # tfmot's argument name
        # Pruned weights are zero in the variables (tfmot assigns w * mask here).
        if not self.prunable_layers:
            return
        backend.sync_state(self.model)
        for layer in self.prunable_layers:
            for slot in layer.slots:
                slot.weight.variable.assign(apply_mask(slot.weight.variable.value, slot.mask))

    def on_train_end(self, logs=None):
        state_lib.detach(self.prunable_layers)


class PruningSummaries(keras.callbacks.TensorBoard):
    """TensorBoard logs, plus the sparsity of every mask at each epoch start.

    The scalars go to `<log_dir>/metrics`, one per pruned weight, tagged
    `<wrapper name>/<weight path>/sparsity` (tfmot tags its own variables,
    `<wrapper>/mask:0/sparsity`); tfprune keeps no threshold variable, so
    there is no `threshold` scalar.

    Args:
        log_dir: the TensorBoard log directory.
        update_freq: as `keras.callbacks.TensorBoard`. Defaults to "epoch".
        **kwargs: more `keras.callbacks.TensorBoard` arguments.
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        if not isinstance(log_dir, str) or not log_dir:
            raise ValueError(
                f"`log_dir` must be a non-empty string. You passed `log_dir`={log_dir}. "
                f"{received('log_dir', log_dir)}")
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(
                "PruningSummaries writes TensorBoard logs (it is a keras.callbacks.TensorBoard, "
                "as in tfmot), which need the `tensorboard` package: "
                "pip install tensorboard (or tfprune[tfmot]).")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._metrics_writer = None

    def _writer(self):
        if self._metrics_writer is None:
            import tensorflow as tf

            self._metrics_writer = tf.summary.create_file_writer(self.log_dir + "/metrics")
        return self._metrics_writer

    def on_epoch_begin(self, epoch, logs=None):
        if logs is not None:
            super().on_epoch_begin(epoch, logs)
        import tensorflow as tf

        layers = prunable_layers(self.model)
        if not layers:
            return
        backend.sync_state(self.model)
        step = int(_value(self.model.optimizer.iterations)) if self.model.optimizer else 0
        with self._writer().as_default(step=step):
            for layer in layers:
                for pw, mask in zip(layer.pruned_weights, layer.masks):
                    sparsity = 1.0 - float(_value(ops.mean(ops.cast(mask, "float32"))))
                    tf.summary.scalar(f"{layer.name}/{pw.name}/sparsity", sparsity)
        self._writer().flush()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self._metrics_writer is not None:
            self._metrics_writer.close()
            self._metrics_writer = None
