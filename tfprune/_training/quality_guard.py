"""`QualityGuard`: stop raising sparsity when the validation metric degrades."""

from __future__ import annotations

import math
import numbers
import warnings

import keras
import numpy as np

from tfprune._base.sensitivity_table import metric_mode
from tfprune._base.validation import received
from tfprune._training import state as state_lib
from tfprune._training.wrapper import find_wrappers


def mask_sparsity(wrappers) -> float:
    """Fraction of zeros over all the masks of `wrappers`."""
    total = zeros = 0
    for wrapper in wrappers:
        for mask in wrapper.masks:
            m = np.asarray(keras.ops.convert_to_numpy(mask))
            total += m.size
            zeros += int(m.size - np.count_nonzero(m))
    return zeros / total if total else 0.0


@keras.saving.register_keras_serializable("tfprune")
class QualityGuard(keras.callbacks.Callback):
    """Stops pruning when the validation metric degrades past a tolerance.

    At each epoch end the monitored metric is compared with `baseline`, or,
    by default, with the best value seen so far in this `fit`. While it stays
    within `max_degradation` (relative), the guard remembers the model's
    weights and masks and the sparsity reached. The first time it degrades
    further, the guard:

    1. restores the weights and masks of the last epoch that met the
       tolerance (all the model's weights, masks and pruning steps included);
    2. freezes pruning: sets `frozen = True` on every `PruningWrapper`
       (`PruningCallback` then updates no more masks) and `guard.stopped`;
    3. keeps `guard.best_sparsity`, the highest sparsity that met the
       tolerance, printed at the end of training when `verbose`.

    Training goes on at that sparsity, which lets the model recover. The
    state is reset at the start of every `fit`.

    Args:
        monitor: the metric in the epoch logs. Defaults to "val_mae".
        max_degradation: tolerated relative degradation, `>= 0`. Defaults
            to 0.02 (2%).
        baseline: reference value of the metric; None (default) uses the
            best value seen so far.
        mode: "min", "max" or "auto" (from the name: accuracy-like metrics
            are maximized).
        verbose: 1 prints when the guard stops pruning and its summary at
            the end of training. Defaults to 1.

    Attributes:
        stopped: True once the guard has frozen pruning.
        stopped_epoch: the epoch at which it did, or None.
        best_sparsity: highest mask sparsity that met the tolerance, or None.
        best_value: the monitored value at that epoch.

    Example:

    ```python
    pruned.fit(x, y, validation_split=0.2, epochs=30, callbacks=[
        tfprune.PruningCallback(),
        tfprune.QualityGuard(monitor="val_mae", max_degradation=0.02),
    ])
    ```
    """

    def __init__(
        self,
        monitor: str = "val_mae",
        max_degradation: float = 0.02,
        baseline: float | None = None,
        mode: str = "auto",
        verbose: int = 1,
    ):
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"`monitor` must be a metric name. {received('monitor', monitor)}")
        rule = ("`max_degradation` must be a finite number >= 0 (a relative "
                f"tolerance: 0.02 is 2%). {received('max_degradation', max_degradation)}")
        if isinstance(max_degradation, bool) or not isinstance(max_degradation, numbers.Real):
            raise TypeError(rule)
        if not math.isfinite(max_degradation) or max_degradation < 0:
            raise ValueError(rule)
        if baseline is not None and (
            isinstance(baseline, bool) or not isinstance(baseline, numbers.Real)
        ):
            raise TypeError(
                f"`baseline` must be a number or None. {received('baseline', baseline)}"
            )
        self.monitor = monitor
        self.max_degradation = float(max_degradation)
        self.baseline = None if baseline is None else float(baseline)
        self.mode = metric_mode(monitor, mode)
        self._mode_arg = mode
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.stopped = False
        self.stopped_epoch = None
        self.best_sparsity = None
        self.best_value = None
        self._reference = self.baseline
        self._snapshot = None
        self._wrappers = []
        self._warned = False

    # ------------------------------------------------------------ helpers
    def degradation(self, value: float, reference: float) -> float:
        """Relative degradation of `value` with respect to `reference`."""
        worse = value - reference if self.mode == "min" else reference - value
        return worse / max(abs(reference), 1e-12)

    def _take_snapshot(self):
        return [np.array(keras.ops.convert_to_numpy(v.value)) for v in self.model.weights]

    def _restore(self):
        for variable, value in zip(self.model.weights, self._snapshot):
            variable.assign(value)
        state_lib.notify_restored(self.model)  # PruningCallback reads masks and steps again

    def _set_frozen(self, frozen: bool):
        for wrapper in self._wrappers:
            wrapper.frozen = frozen

    # -------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self._reset()
        self._wrappers = find_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                "QualityGuard found no PruningWrapper in the model; it guards a "
                "pruned model (see `tfprune.prune`). "
                f"Received: model={self.model.name}"
            )
        self._set_frozen(False)
        self._snapshot = self._take_snapshot()

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped:
            return
        value = (logs or {}).get(self.monitor)
        if value is None:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"tfprune.QualityGuard: metric '{self.monitor}' is not in the epoch logs "
                    f"(available: {sorted(logs or {})}); the guard does nothing. Pass "
                    "validation data to `fit` or set `monitor`.",
                    UserWarning,
                    stacklevel=2,
                )
            return
        value = float(value)
        if self._reference is None:
            self._reference = value
        if self.degradation(value, self._reference) <= self.max_degradation:
            if self.baseline is None and self.degradation(value, self._reference) < 0:
                self._reference = value  # a new best
            self._snapshot = self._take_snapshot()
            self.best_sparsity = mask_sparsity(self._wrappers)
            self.best_value = value
            return
        self._restore()
        self._set_frozen(True)
        self.stopped, self.stopped_epoch = True, epoch
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: QualityGuard: {self.monitor}={value:.4g} is more than "
                f"{self.max_degradation:.2%} worse than {self._reference:.4g}; restored "
                f"the last model within tolerance (sparsity {self._sparsity_text()}) "
                "and froze pruning."
            )

    def _sparsity_text(self) -> str:
        return "n/a" if self.best_sparsity is None else f"{self.best_sparsity:.4f}"

    def on_train_end(self, logs=None):
        if self.verbose:
            print(
                f"QualityGuard: highest sparsity within {self.max_degradation:.2%} of "
                f"the reference {self.monitor}: {self._sparsity_text()}"
                + (f" (pruning frozen at epoch {self.stopped_epoch + 1})" if self.stopped else "")
            )

    def get_config(self) -> dict:
        return {
            "monitor": self.monitor,
            "max_degradation": self.max_degradation,
            "baseline": self.baseline,
            "mode": self._mode_arg,
            "verbose": self.verbose,
        }

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)
