"""The due mask update inside the compiled train step (TensorFlow `fit`).

Between two train steps, `PruningCallback` checks on the host whether an
update is due and then calls the compiled `MaskUpdate`: a separate call
with host work around it (the schedule, the allocation's counts, reading
the zero counts back). In `fit` on TensorFlow the same update can run
inside the train step instead, as tfmot does: `InStep.install` replaces the
model's train function with one whose step, after the optimizer's, checks
whether an update is due (the optimizer's step, the wrappers' last update
step and a frozen flag, all read on the device) and, if so, runs the same
traced update function under a `tf.cond`. The allocation's counts of every
step of the schedule are computed once, on the host, with the same code as
the callback's (`MaskUpdate._counts`: exact `round(n * s)`), into a table
the step indexes; the update is one call to a function that is never
inlined into the step's graph. The step also returns the overall sparsity in its logs,
from zero counts kept on the device. So a step costs no host round trip,
due or not, and the masks are bit-identical to the callback's.

Used when nothing needs the host at an update; see `ineligible`.
"""

from __future__ import annotations

import math

import numpy as np

from tfprune._base import backend
from tfprune._base import keras_internals
from tfprune._training.update import is_due

#: Largest counts table (steps x groups) built; longer schedules update
#: between steps.
MAX_TABLE = 1 << 22

#: `in_step="auto"` updates inside the step up to this `update_every`. The
#: update's branch costs every step a little even when it is not taken,
#: while an update between steps costs a few milliseconds of host work.
#: Measured by `python -m benchmarks.in_step` (docs/in_step.json): the step
#: wins clearly at an update every step; at every 10 and 50 steps the two
#: are within run-to-run noise, so rarer updates stay between steps.
AUTO_MAX_EVERY = 5


def ineligible(model, params, log_dir, cohorts) -> str | None:
    """Why the update cannot run inside `model`'s train step, or None if it
    can (`params`: the callback's, from `fit`; `cohorts`: the callback's
    cohorts, each with `plan` and `schedule`)."""
    if not backend.update_in_train_step():
        return f"it runs on the TensorFlow backend only (this is '{backend.name()}')"
    if "epochs" not in (params or {}):
        return "it runs inside `fit` only (a custom loop calls the callback's hooks itself)"
    import tensorflow as tf

    if model.distribute_strategy is not tf.distribute.get_strategy():
        return "it does not run under a `tf.distribute` strategy"
    if bool(getattr(model, "jit_compile", False)):
        return "it does not run in an XLA-compiled train step (`jit_compile=True`)"
    if int(getattr(model, "steps_per_execution", 1) or 1) != 1:
        return "it needs `steps_per_execution=1`"
    if log_dir is not None:
        return "per-layer TensorBoard scalars (`log_dir`) are written from the host"
    for cohort in cohorts:
        strategy = cohort.plan.strategy
        if strategy.allocation.needs_scores:
            return (f"{type(strategy.allocation).__name__} allocation ranks the items of "
                    "several tensors on the host")
        if strategy.regularizer is not None:
            return "a regularizer needs the masks of the next update, computed on the host"
        if not strategy.criterion.traceable:
            return f"{type(strategy.criterion).__name__} scores are drawn on the host"
        schedule = cohort.schedule
        rows = max(0, schedule.end_step - schedule.begin_step + 1)
        if rows * max(1, len(cohort.plan.groups)) > MAX_TABLE:
            return (f"the schedule is too long for a counts table ({rows} steps x "
                    f"{len(cohort.plan.groups)} groups)")
    return None


class _Cohort:
    """The device-side state of one cohort: its counts table, frozen flag
    and the zero counts of its last update."""

    def __init__(self, cohort, update, zeros):
        import tensorflow as tf

        schedule = cohort.schedule
        self.cohort, self.update = cohort, update
        self.begin, self.end = schedule.begin_step, schedule.end_step
        table = [update.counts(schedule(t), schedule.final_sparsity)
                 for t in range(self.begin, self.end + 1)]
        groups = len(cohort.plan.groups)
        self.table = tf.constant(np.asarray(table, np.int32).reshape(-1, groups))
        slots = update.changed_slots
        self.variables = [slot.weight.variable for slot in slots]
        # Masked but not counted (recurrent biases under `Units`): not in
        # the sparsity.
        self.counted = [slot.counted for slot in slots]
        self.weights = tf.constant(np.asarray(self.counted, np.int32))
        self.zeros = tf.Variable(self._host_zeros(zeros), trainable=False, dtype=tf.int32)
        self.enabled = tf.Variable(True, trainable=False)
        self.failed = tf.Variable(False, trainable=False)
        self.last = cohort.wrappers[0].pruning_step
        # The update as a function of its own that is never inlined: the
        # train step holds one call to it. Inlined, its few hundred ops per
        # layer join the train step's graph, which then trains markedly
        # slower on a many-layer model even when no update is due.
        self._assign = keras_internals.noinline_function(update.traced_update)

    def _host_zeros(self, zeros):
        return np.asarray([zeros[id(v)] if c else 0
                           for v, c in zip(self.variables, self.counted)], np.int32)

    def sync(self, zeros=None):
        """Reads the frozen flags, and the zero counts the host holds when
        it has just counted them (`zeros`)."""
        if zeros is not None:
            self.zeros.assign(self._host_zeros(zeros))
        self.enabled.assign(not any(getattr(w, "frozen", False) for w in self.cohort.wrappers))

    def step(self, step, every):
        """The traced update check of one step."""
        import tensorflow as tf

        last = tf.cast(self.last, tf.int64)
        due = self.enabled & is_due(step, last, self.begin, self.end, every)

        def run():
            counts = tf.gather(self.table, tf.minimum(step, self.end) - self.begin)
            zeros, finite = self._assign(counts, None, tf.cast(step, backend.step_dtype()))
            # A diverged weight: nothing was assigned; the host raises,
            # naming it (see `InStep.failed`).
            ok = tf.reduce_all(finite)
            self.failed.assign(tf.logical_not(ok))
            self.zeros.assign(tf.where(ok, tf.reshape(tf.cast(zeros, tf.int32), [-1]),
                                       self.zeros))
            return ok

        return tf.cond(due, run, lambda: tf.constant(False))


class InStep:
    """The train function of `model`, with the mask updates inside.

    Args:
        model: the model being trained by `fit`.
        cohorts: the callback's cohorts (`wrappers`, `plan`, `schedule`).
        updates: their `MaskUpdate`s, aligned with `cohorts`.
        zeros: `{id(variable): zeros}` of every pruned weight, as the host
            counted them.
        wrappers: every `PruningWrapper` of the model.
        every: the callback's `update_every`.
    """

    def __init__(self, model, cohorts, updates, zeros, wrappers, every):
        self.cohorts = [_Cohort(c, u, zeros) for c, u in zip(cohorts, updates)]
        changed = {id(v) for c in self.cohorts for v in c.variables}
        self.fixed_zeros = sum(z for k, z in zeros.items() if k not in changed)
        self.wrappers = list(wrappers)
        self.total = sum(math.prod(tuple(pw.variable.shape))
                         for w in self.wrappers for pw in w.pruned_weights)
        self.model = model
        base = model.train_step

        def train_step(data):
            import tensorflow as tf

            logs = base(data)
            step = tf.cast(model.optimizer.iterations, tf.int64)
            for cohort in self.cohorts:
                cohort.step(step, every)
            zeros = self.fixed_zeros + sum(tf.reduce_sum(c.zeros * c.weights)
                                           for c in self.cohorts)
            failed = tf.reduce_any(tf.stack([c.failed for c in self.cohorts]))
            logs = dict(logs)
            # -1: an update met a diverged weight (the host raises).
            # float64, as the host divides: the same value as between steps.
            logs["sparsity"] = tf.where(failed, tf.constant(-1.0, tf.float64),
                                        tf.cast(zeros, tf.float64) / max(self.total, 1))
            return logs

        model.train_function = keras_internals.make_train_function(model, train_step)

    def failed(self) -> list:
        """The cohorts whose last update met a weight with NaN or inf."""
        return [c.cohort for c in self.cohorts if bool(c.failed.numpy())]

    def sync(self, zeros=None):
        """Frozen flags to the device; with `zeros` (`{id(variable):
        zeros}`), the host's fresh zero counts too (at train begin, after a
        restore)."""
        for cohort in self.cohorts:
            cohort.sync(zeros)

    def read_back(self) -> tuple:
        """`({id(variable): zeros}, {id(wrapper): last update step})` as
        the device holds them (at the end of `fit`)."""
        zeros = {}
        for cohort in self.cohorts:
            values = np.asarray(cohort.zeros.numpy()).reshape(-1)
            for v, z, counted in zip(cohort.variables, values, cohort.counted):
                if counted:
                    zeros[id(v)] = int(z)
        last = {id(w): int(w.pruning_step.numpy()) for w in self.wrappers}
        return zeros, last

    def uninstall(self):
        # The next `fit` builds its own train function.
        self.model.train_function = None
