"""`PruningCallback`: updates the masks of a pruned model on schedule."""

from __future__ import annotations

import math
import threading
import warnings

import keras

from tfprune._base import backend
from tfprune._base.validation import check_positive_int
from tfprune._base.validation import received
from tfprune._masks.core import apply_mask
from tfprune._training import in_step as _in_step
from tfprune._training import state as state_lib
from tfprune._training import wrapper as _wrapper
from tfprune._training.cohort import plan_cohorts
from tfprune._training.update import MaskUpdate


#: Serializes the reading of step logs that Keras hands to callbacks in
#: threads of their own (`PruningCallback.async_safe`).
_LOGS_LOCK = threading.Lock()


def _write_scalar(tag: str, value: float) -> None:
    """Writes a TensorBoard scalar to the default summary writer.

    `tf.summary.scalar` needs the `tensorboard` package, which TensorFlow no
    longer installs; this writes the same record (a float32 tensor tagged for
    the "scalars" plugin) with TensorFlow alone.
    """
    import tensorflow as tf

    metadata = tf.compat.v1.SummaryMetadata(
        plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


def _zeros(slot, known) -> int:
    """Zeros of `slot`'s masked weight; from `known` if it was just counted."""
    zeros = known.get(slot.key)
    return state_lib.masked_zeros(slot.weight, slot.mask) if zeros is None else zeros


def overall_sparsity(wrappers, known=None) -> float:
    """Fraction of zeros over every weight the wrappers prune.

    `known` maps a weight's key (`Slot.key`) to a zero count already taken
    (by the last mask update); those weights are not read again.
    """
    known = known or {}
    total = zeros = 0
    for w in wrappers:
        for slot in w.slots:
            if slot.counted:
                total += math.prod(tuple(slot.weight.variable.shape))
                zeros += _zeros(slot, known)
    return zeros / total if total else 0.0


@keras.saving.register_keras_serializable("tfprune")
class PruningCallback(keras.callbacks.Callback):
    """Updates the pruning masks during `fit`; the one callback pruning needs.

    The clock is `model.optimizer.iterations`, the number of optimizer steps
    taken, so the schedule survives `steps_per_execution > 1`, several `fit`
    calls and a model reloaded from a checkpoint. It is read from the device
    at the start of training and after the first batch (a callback such as
    `BackupAndRestore` may restore it in between); in between the callback
    counts the steps of each batch itself, and reads the clock again only
    when an update is due, so a step with no update costs no transfer from
    the device. Masks are updated when the schedule has begun and
    `update_every` steps have passed since the last update, and always at
    the first opportunity at or after the schedule's `end_step`, so the
    final sparsity is reached exactly then whatever `update_every` is. The
    callback checks at the start of training and after every batch (every
    `steps_per_execution` steps).

    One update is one compiled call per schedule (see `MaskUpdate`): the
    strategy's scores, counts and masks are computed, the masks assigned
    and the pruned weights zeroed on the device. In `fit`, when nothing
    needs the host at an update, the update runs inside the compiled train
    step (`in_step`): the step checks on the device whether an update is
    due and runs the same update, with the same masks; a step then costs
    no host round trip at all. On TensorFlow the default does so for
    frequent updates (`update_every` of 5 or less), on JAX always.
    Otherwise (PyTorch, a custom loop, `steps_per_execution > 1`,
    `log_dir`, `Global` allocation, `Random` scores, a regularizer, a
    schedule over 4M steps x groups; on TensorFlow `jit_compile=True` or a
    `tf.distribute` strategy; on JAX `run_eagerly`, a `keras.distribution`
    or wrappers with schedules of their own) the update runs between
    steps, as described above.

    Each update applies the wrappers' strategy (`tfprune.strategies`) to the
    whole model at once: one plan, one allocation of the schedule's target
    across the layers. Wrappers must share one strategy. When they also
    share one schedule (as `tfprune.prune` makes them) they are all updated
    at the same steps; wrappers with different schedules are updated each on
    its own, which only allocations that do not rank layers together
    (`Uniform`, `PerLayer`) allow. A wrapper whose `frozen` attribute is True
    (see `tfprune.QualityGuard`) keeps its masks.

    The overall sparsity of the pruned weights is written into `logs` as
    `"sparsity"`, so it shows in the progress bar and in `History`; it
    comes from the zeros counted by the last update, not from a recount.

    Args:
        update_every: minimum number of steps between two mask updates.
            Defaults to 100.
        log_dir: optional directory; per-layer sparsity is written there as
            TensorBoard scalars (`sparsity/<layer>`) at each update, and the
            overall sparsity at each epoch end.
        in_step: where a due update runs in `fit`: `"auto"` (default)
            inside the train step when it can and, on TensorFlow,
            `update_every <= 5` (there rarer updates cost less between
            steps than a branch in every step; see `python -m
            benchmarks.in_step`), else between steps; `True`
            inside the train step, or a `ValueError` at the start of
            training saying why it cannot; `False` always between steps.

    Attributes:
        plan: the `tfprune.strategies.Plan` of the model being trained
            (set at `on_train_begin`).
        sparsity: the overall sparsity after the last update.

    Example:

    ```python
    pruned = tfprune.prune(model, tfprune.schedules.PolynomialDecay(0.0, 0.9, 0, 2000))
    pruned.compile("adam", "mse")
    pruned.fit(x, y, epochs=10, callbacks=[tfprune.PruningCallback(update_every=50)])
    ```

    In a custom training loop, call the hooks yourself. The model must know
    its optimizer, whose `iterations` are the clock:

    ```python
    pruned.compile(optimizer=optimizer)
    callback = tfprune.PruningCallback()
    callback.set_model(pruned)
    callback.on_train_begin()
    for step, (x, y) in enumerate(dataset):
        train_step(x, y)              # forward with training=True, optimizer.apply
        callback.on_train_batch_end(step)
    callback.on_train_end()
    ```
    """

    def __init__(self, update_every: int = 100, log_dir: str | None = None,
                 in_step="auto"):
        super().__init__()
        self.update_every = check_positive_int("update_every", update_every)
        if not (in_step == "auto" or isinstance(in_step, bool)):
            raise ValueError(
                f'`in_step` must be "auto", True or False. {received("in_step", in_step)}'
            )
        self.in_step = in_step
        self._in_step = None
        if log_dir is not None and not isinstance(log_dir, str):
            raise TypeError(
                f"`log_dir` must be a path string or None. {received('log_dir', log_dir)}"
            )
        self.log_dir = log_dir
        self._wrappers = []
        self._cohorts = []  # `cohort.Cohort`s, each with its wrappers' last update
        self._slots = []
        self.plan = None
        self._zeros = {}  # Slot.key -> zeros, from the last count or update
        self._writer = None
        self._clock = 0  # the step, counted on the host between reads
        self._last_batch = -1
        self._synced = False
        self._restores = 0  # restores of the model's masks seen (`state.restore_count`)
        self._at_batch_begin = False  # work between steps at batch begin (`async_safe`)
        self._begun = -1  # the last batch begun in this epoch
        self._error = None  # raised at the epoch end (`async_safe`)
        self._logged_step = -1  # the step of the newest count read from the logs
        self.sparsity = 0.0

    # ------------------------------------------------------------- helpers
    def _step(self) -> int:
        """Reads the clock from the device."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "PruningCallback needs a compiled model (its clock is "
                "`model.optimizer.iterations`); call `model.compile(...)` "
                f"first. Received: model={self.model.name}"
            )
        backend.sync_state(self.model)
        return int(optimizer.iterations.numpy())

    def _any_due(self, step: int) -> bool:
        return any(c.due(step, self.update_every) for c in self._cohorts)

    def _mask_update(self, cohort):
        """The compiled update of `cohort` (made once)."""
        if cohort.update is None:
            names = {slot.key: w.layer.name for w in self._wrappers
                     for slot in w.slots if slot.counted}
            cohort.update = MaskUpdate(cohort.plan, self._slots,
                                       [w.pruning_step for w in cohort.wrappers], names)
        return cohort.update

    def _update(self, cohort, step: int) -> dict:
        """Updates the masks of `cohort`; returns `{key: zeros}` (`Slot.key`)."""
        self._mask_update(cohort)
        schedule = cohort.schedule
        upcoming = None
        if cohort.plan.strategy.regularizer is not None:  # the mask the next update gives
            next_step = max(step, min(step + self.update_every, schedule.end_step))
            upcoming = (schedule(next_step), next_step)
        zeros = cohort.update(schedule(step), step=step, final_sparsity=schedule.final_sparsity,
                              upcoming=upcoming)
        cohort.updated(step)
        return zeros

    def update_masks(self, step: int | None = None) -> bool:
        """Updates the masks that are due at `step` (default: the clock).

        Returns:
            True if any mask changed.
        """
        step = self._step() if step is None else int(step)
        updated, zeros = [], {}
        for cohort in self._cohorts:
            if cohort.due(step, self.update_every):
                zeros.update(self._update(cohort, step))
                updated.extend(cohort.wrappers)
        if updated:
            self._zeros.update(zeros)
            self.sparsity = overall_sparsity(self._wrappers, self._zeros)
            if self._writer is not None:
                self._write_layer_scalars(updated, step, self._zeros)
        return bool(updated)

    def _resync(self):
        """Reads the step, the wrappers' last updates and the zeros again:
        at the start of training, or after masks were restored."""
        self._clock = self._step()
        for cohort in self._cohorts:
            cohort.read_last()
        lasts = [(w, last) for c in self._cohorts for w, last in zip(c.wrappers, c.last)]
        behind = sorted(w.name for w, last in lasts
                        if self._clock < last < w.schedule.end_step)
        if behind:
            warnings.warn(
                f"tfprune: the optimizer's step ({self._clock}) is behind the last mask "
                f"update of {behind} ({max(last for _, last in lasts)}): the optimizer state was "
                "not restored with the weights (Keras loads it only into a built "
                "optimizer: call `model.optimizer.build(model.trainable_variables)` before "
                "`load_weights`). The schedule goes on from the optimizer's step.",
                stacklevel=2)
        self._zeros = state_lib.count_zeros(self._wrappers)
        self.sparsity = overall_sparsity(self._wrappers, self._zeros)
        self._restores = state_lib.restore_count(self.model)

    def _write_layer_scalars(self, wrappers, step, zeros):
        with self._writer.as_default(step=step):
            for wrapper in wrappers:
                for slot in wrapper.slots:
                    if slot.counted:
                        size = math.prod(tuple(slot.weight.variable.shape))
                        _write_scalar(f"sparsity/{slot.weight.name}", _zeros(slot, zeros) / size)
            _write_scalar("sparsity/overall", self.sparsity)
        self._writer.flush()

    # --------------------------------------------------------------- hooks
    def on_train_begin(self, logs=None):
        self._wrappers = _wrapper.find_wrappers(self.model)
        if not self._wrappers:
            raise ValueError(
                "PruningCallback found no PruningWrapper in the model; prune it "
                "first with `tfprune.prune(model, sparsity)`. "
                f"Received: model={self.model.name}"
            )
        unbuilt = [w.name for w in self._wrappers if w.pruning_step is None]
        if unbuilt:
            raise ValueError(
                f"PruningWrapper layers {unbuilt} are not built; build the model "
                "(call it on data or give it an Input) before training. "
                f"Received: model={self.model.name}"
            )
        state_lib.key_slots(s for w in self._wrappers for s in w.slots)  # results' keys
        self.plan, self._slots, self._cohorts = plan_cohorts(self.model, self._wrappers)
        state_lib.attach(self._wrappers)
        if self.log_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._resync()
        self._last_batch, self._synced, self._begun, self._error = -1, False, -1, None
        self._logged_step = -1
        self._at_batch_begin = self.async_safe and "epochs" in (self.params or {})
        self.update_masks(self._clock)
        self._install_in_step()

    def _install_in_step(self):
        self._in_step = None
        if self.in_step is False or (
                self.in_step == "auto" and self.update_every > _in_step.auto_max_every()):
            return
        reason = _in_step.ineligible(self.model, self.params, self.log_dir, self._cohorts)
        if reason is None:
            for cohort in self._cohorts:
                self._mask_update(cohort)
            self._in_step = _in_step.install(
                self.model, self._cohorts, self._zeros, self.update_every)
            self._in_step.sync(self._zeros)
        elif self.in_step is True:
            raise ValueError(
                f"`in_step=True`, but the mask update cannot run inside the train step: "
                f"{reason}. Pass `in_step='auto'` to update between steps there. "
                "Received: in_step=True"
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._last_batch = self._begun = -1
        # QualityGuard may have restored earlier masks and steps.
        restored = state_lib.restore_count(self.model) != self._restores
        if restored:
            self._resync()
        if self._in_step is not None:  # frozen flags (and fresh counts) to the device
            self._in_step.sync(self._zeros if restored else None)

    @property
    def async_safe(self) -> bool:
        """Whether Keras may run `on_train_batch_end` in a thread of its own
        while the next step runs, rather than wait for each step's logs
        (a wait that small JAX steps feel).
        True where `fit`'s train step is pure (JAX): there this callback
        does its work between steps in `on_train_batch_begin` (or inside
        the step), and its batch end only reads the step's logs."""
        return backend.pure_train_step()

    def on_train_batch_begin(self, batch, logs=None):
        if self._in_step is not None:
            self._in_step.before_step()  # the train function of this step
            return
        # With `async_safe`, the steps done so far in this epoch are
        # counted (and a due update runs) before the next batch, in
        # `fit`'s own thread.
        if self._at_batch_begin:
            self._begun = int(batch)
            if batch > 0:
                self._advance(int(batch) - 1)

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last step of this batch in the epoch
        # (several with `steps_per_execution`); a custom loop that restarts
        # its count starts a new epoch.
        if self._in_step is not None:
            self._after_in_step_batch(logs)
            return
        if not self._at_batch_begin:
            self._advance(int(batch))
        if logs is not None:
            logs["sparsity"] = self.sparsity

    def _advance(self, batch: int):
        """Counts the steps up to the end of `batch` and runs the updates
        due then."""
        steps = (self.params or {}).get("steps")
        if steps:  # the last execution of an epoch can be shorter
            batch = min(batch, int(steps) - 1)
        self._clock += batch - self._last_batch if batch > self._last_batch else batch + 1
        self._last_batch = batch
        if not self._synced or self._any_due(self._clock):
            # The first batch (a callback may have restored the step at
            # train begin) and due updates read the exact step.
            counted = self._clock
            self._clock = self._step()
            if not self._synced and self._clock != counted:
                # Restored since train begin (a callback listed after this
                # one, such as BackupAndRestore): masks and steps too.
                self._resync()
            self._synced = True
            self.update_masks(self._clock)

    def _hold_zeros(self):
        """Where optimizers cannot apply the masks as constraints (JAX),
        pruned weights may drift between updates while the forward pass
        masks them: they are zeroed in the variables at each epoch end and
        at the end of training, so a saved model is as sparse as its masks."""
        if backend.optimizer_applies_constraints():
            return
        backend.sync_state(self.model)
        for wrapper in self._wrappers:
            for slot in wrapper.slots:
                slot.weight.variable.assign(apply_mask(slot.weight.variable.value, slot.mask))

    def _after_in_step_batch(self, logs):
        if self._in_step.pure:
            self._read_step_logs(logs)
            return
        if not self._synced:
            # The first batch: a callback listed after this one (such as
            # BackupAndRestore) may have restored the step, masks and steps
            # since train begin; the device reads those itself, the host
            # reads its counts again.
            self._synced = True
            if self._step() != self._clock + 1:
                self._resync()
                self._in_step.sync(self._zeros)
                if logs is not None:
                    logs["sparsity"] = self.sparsity
                return
        sparsity = None if logs is None else logs.get("sparsity")
        if sparsity is None:
            return
        sparsity = float(sparsity)
        if sparsity < 0:  # an update met a diverged weight: raise, naming it
            step = self._step()
            for cohort in self._in_step.failed():
                self._update(cohort, step)
        # The zero count, exact (the device's division may differ in the
        # last bit), over the total, as between steps.
        total = self._in_step.total
        self.sparsity = round(sparsity * total) / total if total else 0.0
        logs["sparsity"] = self.sparsity

    def _read_step_logs(self, logs):
        """The logs of a pure train step (JAX; maybe in a thread of its own,
        see `async_safe`): no device access here. A step that ran an update
        logs its code (`in_step.ZEROS_KEY`): the zero count, or the position
        of a weight holding NaN or inf, which stops the training; the error
        is raised at the epoch's end, once `fit` has written its state
        back."""
        if logs is None:
            return
        packed = logs.pop(_in_step.ZEROS_KEY, None)
        if packed is not None:
            step, code = (int(v) for v in packed)
            with _LOGS_LOCK:  # threads may bring the steps out of order
                if code <= -2:
                    if self._error is None:
                        try:
                            self._in_step.raise_diverged(code)
                        except ValueError as error:
                            self._error = error
                        self.model.stop_training = True
                    return
                if step > self._logged_step:
                    self._logged_step = step
                    total = self._in_step.total
                    self.sparsity = code / total if total else 0.0
        logs["sparsity"] = self.sparsity

    def _catch_up(self):
        """With `async_safe`: the updates due after the last batch begun
        (before validation, at the epoch end)."""
        if self._at_batch_begin and self._in_step is None and self._begun > self._last_batch:
            # The last batch ran `steps_per_execution` steps from `_begun`
            # (`_advance` cuts a shorter last execution at the epoch's end).
            spe = int(getattr(self.model, "steps_per_execution", 1) or 1)
            self._advance(self._begun + spe - 1)

    def on_test_begin(self, logs=None):
        self._catch_up()  # `fit`'s validation sees the masks due by now

    def on_epoch_end(self, epoch, logs=None):
        if self._error is not None:
            # `fit` has written its state back: the model keeps its
            # variables; the next `fit` builds a plain train function.
            error, self._error = self._error, None
            self._in_step.uninstall()
            self._in_step = None
            self._at_batch_begin = False
            state_lib.detach(self._wrappers)
            raise error
        self._catch_up()
        self._hold_zeros()
        if logs is not None:
            logs.pop(_in_step.ZEROS_KEY, None)
            logs["sparsity"] = self.sparsity
        if self._writer is not None:
            with self._writer.as_default(step=self._clock):
                _write_scalar("sparsity/overall", self.sparsity)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._in_step is not None:
            # The host's view of the updates made on the device.
            self._zeros.update(self._in_step.read_back())
            for cohort in self._cohorts:
                cohort.read_last()
            self.sparsity = overall_sparsity(self._wrappers, self._zeros)
            self._clock = self._step()
            self._in_step.uninstall()
            self._in_step = None
        self._hold_zeros()
        self._at_batch_begin = False
        state_lib.detach(self._wrappers)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"update_every": self.update_every, "log_dir": self.log_dir,
                "in_step": self.in_step}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
