"""The due mask update inside `fit`'s compiled train step.

Between two train steps, `PruningCallback` checks on the host whether an
update is due and then calls the compiled `MaskUpdate`: a separate call
with host work around it (the schedule, the allocation's counts, reading
the zero counts back; on JAX also `fit`'s whole state written back into
the variables and read again by the next step). In `fit` the same update
can run inside the train step instead, with the allocation's counts of
every step of the schedule computed once, on the host, with the same code
as the callback's (`MaskUpdate.counts`: exact `round(n * s)`), into a table
the step indexes; the masks are bit-identical to the callback's.

- TensorFlow (`InStep`), as tfmot does: the model's train function is
  replaced with one whose step, after the optimizer's, checks whether an
  update is due (the optimizer's step, the wrappers' last update step and
  a frozen flag, all read on the device) and, if so, runs the same traced
  update function under a `tf.cond`, as one call to a function that is
  never inlined into the step's graph. The step also returns the overall
  sparsity in its logs, from zero counts kept on the device. So a step
  costs no host round trip, due or not.
- JAX (`PureInStep`), whose train step is a pure function of the training
  state: the host decides before each step, by the same rule, whether it
  ends with an update, and hands `fit` Keras' own step or the step followed
  by the pure update, whose results go into the state the step returns.

`install` picks the one of the backend; `ineligible` says why neither can
run (then the update runs between steps).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from tfprune._base import backend
from tfprune._base import keras_internals
from tfprune._training import state as state_lib
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

#: The same for a pure train step (JAX), where an update between steps
#: also writes the whole training state back into the variables and the
#: next step reads it again. None: any `update_every`.
AUTO_MAX_EVERY_PURE = None


def auto_max_every() -> float:
    """The largest `update_every` that `in_step="auto"` runs inside the
    step on this backend."""
    limit = AUTO_MAX_EVERY_PURE if backend.pure_train_step() else AUTO_MAX_EVERY
    return math.inf if limit is None else limit


def ineligible(model, params, log_dir, cohorts) -> str | None:
    """Why the update cannot run inside `model`'s train step, or None if it
    can (`params`: the callback's, from `fit`; `cohorts`: the callback's
    `cohort.Cohort`s)."""
    if not backend.update_in_train_step():
        return f"it runs on TensorFlow and JAX only (this is '{backend.name()}')"
    if "epochs" not in (params or {}):
        return "it runs inside `fit` only (a custom loop calls the callback's hooks itself)"
    reason = _pure_ineligible(model, cohorts) if backend.pure_train_step() \
        else _graph_ineligible(model)
    if reason is not None:
        return reason
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


def _graph_ineligible(model) -> str | None:
    import tensorflow as tf

    if model.distribute_strategy is not tf.distribute.get_strategy():
        return "it does not run under a `tf.distribute` strategy"
    if bool(getattr(model, "jit_compile", False)):
        return "it does not run in an XLA-compiled train step (`jit_compile=True`)"
    return None


def _pure_ineligible(model, cohorts) -> str | None:
    if keras.distribution.distribution() is not None:
        return "it does not run under a `keras.distribution` distribution"
    if bool(getattr(model, "run_eagerly", False)) or not bool(
            getattr(model, "jit_compile", True)):
        return "it runs in a compiled train step only (`jit_compile=True`, not `run_eagerly`)"
    if len(cohorts) != 1:
        return "wrappers with schedules of their own are updated each on its own"
    return None


def install(model, cohorts, zeros, every):
    """The in-step update of this backend (see `InStep`), installed into
    `model`'s train function."""
    cls = PureInStep if backend.pure_train_step() else InStep
    return cls(model, cohorts, zeros, every)


def _total(cohorts) -> int:
    """Weights pruned by the wrappers of `cohorts` (the sparsity's
    denominator)."""
    return sum(math.prod(tuple(slot.weight.variable.shape))
               for c in cohorts for w in c.wrappers for slot in w.slots if slot.counted)


class _CohortOnDevice:
    """The device-side state of one `cohort.Cohort` (TensorFlow): its
    counts table, frozen flag and the zero counts of its last update."""

    def __init__(self, cohort, zeros):
        import tensorflow as tf

        update = cohort.update
        schedule = cohort.schedule
        self.cohort = cohort
        self.begin, self.end = schedule.begin_step, schedule.end_step
        table = [update.counts(schedule(t), schedule.final_sparsity)
                 for t in range(self.begin, self.end + 1)]
        groups = len(cohort.plan.groups)
        self.table = tf.constant(np.asarray(table, np.int32).reshape(-1, groups))
        slots = update.changed_slots
        self.keys = [slot.key for slot in slots]
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
        return np.asarray([zeros[k] if c else 0
                           for k, c in zip(self.keys, self.counted)], np.int32)

    def sync(self, zeros=None):
        """Reads the frozen flags, and the zero counts the host holds when
        it has just counted them (`zeros`)."""
        if zeros is not None:
            self.zeros.assign(self._host_zeros(zeros))
        self.enabled.assign(not self.cohort.frozen)

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
        cohorts: the callback's `cohort.Cohort`s, every wrapper of the
            model in one of them, each with its `update` made.
        zeros: `{key: zeros}` (`Slot.key`) of every pruned weight, as the
            host counted them.
        every: the callback's `update_every`.
    """

    #: The callback reads the device after the first batch (see `PureInStep`).
    pure = False

    def __init__(self, model, cohorts, zeros, every):
        self.cohorts = [_CohortOnDevice(c, zeros) for c in cohorts]
        changed = {k for c in self.cohorts for k in c.keys}
        self.fixed_zeros = sum(z for k, z in zeros.items() if k not in changed)
        self.total = _total(cohorts)
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

    def before_step(self):
        """Nothing to do: the step decides on the device."""

    def failed(self) -> list:
        """The cohorts whose last update met a weight with NaN or inf."""
        return [c.cohort for c in self.cohorts if bool(c.failed.numpy())]

    def sync(self, zeros=None):
        """Frozen flags to the device; with `zeros` (`{key: zeros}`), the
        host's fresh zero counts too (at train begin, after a restore)."""
        for cohort in self.cohorts:
            cohort.sync(zeros)

    def read_back(self) -> dict:
        """`{key: zeros}` (`Slot.key`) of the weights the updates count, as
        the device holds them (at the end of `fit`; the wrappers' last
        update steps are in their `pruning_step`)."""
        zeros = {}
        for cohort in self.cohorts:
            values = np.asarray(cohort.zeros.numpy()).reshape(-1)
            for k, z, counted in zip(cohort.keys, values, cohort.counted):
                if counted:
                    zeros[k] = int(z)
        return zeros

    def uninstall(self):
        # The next `fit` builds its own train function.
        self.model.train_function = None


#: The log key of `[step, code]` a pure (JAX) train step returns, the code
#: being the zero count after an update at that step, -1 without one, or
#: -(2 + position) when the weight at that position held NaN or inf; the
#: callback reads it and removes it.
ZEROS_KEY = "tfprune_zeros"


class PureInStep:
    """The mask update inside `fit`'s train step where the step is a pure
    function of the training state (JAX).

    Two compiled train functions: Keras' own step, and the same step
    followed by the update. Before each step (`before_step`, from the
    callback's `on_train_batch_begin`) the host decides, by the rule it
    applies between steps (`is_due`, on a step it counts itself), whether
    the coming step makes an update due, and gives `fit` the function to
    call: no step waits for the device, and a step with no update is
    Keras' own. (A `lax.cond` in every step instead makes XLA copy the
    branch's operands at every step, which slows small steps markedly.) In the step with the update, the optimizer's step,
    weights, masks and scores are read from the state the step returns;
    the pure update of `MaskUpdate.pure` runs with the counts of that step
    (a table built on the host once, as on TensorFlow), and its masks,
    zeroed weights and step are written into the state. That step logs
    the update's zero count (`ZEROS_KEY`); a weight holding NaN or inf
    makes the update assign nothing and log its position instead (the host
    raises, naming it).

    One cohort only (wrappers sharing one schedule) and
    `steps_per_execution=1`; frozen wrappers (`QualityGuard`) are read at
    each epoch start.

    Args: as `InStep`.
    """

    #: The callback reads only the step's logs (maybe in a thread of its
    #: own) and calls `before_step` before each step.
    pure = True

    def __init__(self, model, cohorts, zeros, every):
        (cohort,) = cohorts
        update = cohort.update
        self.model, self.cohort, self.update, self.every = model, cohort, update, every
        self.wrappers = list(cohort.wrappers)
        schedule = cohort.schedule
        self.begin, self.end = schedule.begin_step, schedule.end_step
        groups = len(cohort.plan.groups)
        table = [update.counts(schedule(t), schedule.final_sparsity)
                 for t in range(self.begin, self.end + 1)]
        self.table = np.asarray(table, np.int32).reshape(-1, groups)
        # Where each variable's value sits in the state: (part, index), found
        # by identity (an object map, not a result).
        where = {}
        parts = (model.trainable_variables, model.non_trainable_variables,
                 model.optimizer.variables)
        for part, variables in enumerate(parts):
            for index, variable in enumerate(variables):
                where[id(variable)] = (part, index)
        weights, masks, scores = update.inputs()
        self._shapes = [tuple(v.shape) for v in weights]
        self._weights = [where[id(v)] for v in weights]
        self._masks = [None if m is None else where[id(m)] for m in masks]
        self._scores = None if scores is None else [
            None if v is None else where[id(v)] for v in scores]
        self._steps = [where[id(v)] for v in update.steps]
        self._clock_at = where[id(model.optimizer.iterations)]
        # The zeros an update counts, and those of the weights it leaves
        # alone (masked but not counted: recurrent biases under `Units`).
        slots = update.changed_slots
        self._counted_flags = [int(bool(slot.counted)) for slot in slots]
        changed = {slot.key for slot in slots}
        self.fixed_zeros = sum(z for k, z in zeros.items() if k not in changed)
        self.total = _total(cohorts)
        # A function of its own, not `model.train_step` itself: JAX caches
        # what it traced per function, and Keras' next train function must
        # trace anew (a wrapper refuses to train without a callback).
        self._plain = keras_internals.make_train_function(
            model, backend.compiled_train_step(lambda state, data: model.train_step(state, data)))
        self._with_update = keras_internals.make_train_function(
            model, backend.compiled_train_step(self._step_with_update))
        self._clock = self._last = None
        self._enabled = True
        self.sync()

    def _step_with_update(self, state, data):
        """Keras' train step, then the update of the step it took."""
        update, changed = self.update, self.update.changed
        logs, state = self.model.train_step(state, data)
        state = [list(part) for part in state]

        def get(at):
            return state[at[0]][at[1]]

        step = ops.cast(get(self._clock_at), backend.step_dtype())
        values = [get(at) for at in self._weights]
        previous = [ops.ones(shape) if at is None else get(at)
                    for at, shape in zip(self._masks, self._shapes)]
        states = None if self._scores is None else [
            None if at is None else get(at) for at in self._scores]
        # Written by the update: masks, weights, steps (and scores reset).
        targets = ([self._masks[t] for t in changed] + [self._weights[t] for t in changed]
                   + self._steps)
        if update.resets_scores and self._scores is not None:
            targets += [self._scores[t] for t in changed if self._scores[t] is not None]
        old = [get(at) for at in targets]
        counts = ops.take(ops.convert_to_tensor(self.table),
                          ops.minimum(step, self.end) - self.begin, axis=0)
        masks, new, zeros, finite = update.pure(counts, step, values, previous, states)
        ok = ops.all(finite)
        fresh = ([ops.cast(m, previous[t].dtype) for t, m in zip(changed, masks)]
                 + list(new) + [ops.cast(step, get(at).dtype) for at in self._steps])
        fresh += [ops.zeros_like(v) for v in old[len(fresh):]]
        for at, f, o in zip(targets, fresh, old):  # NaN or inf: nothing is assigned
            state[at[0]][at[1]] = ops.where(ok, f, o)
        zeros = self.fixed_zeros + ops.sum(
            ops.cast(zeros, "int32") * ops.convert_to_tensor(self._counted_flags, "int32"))
        code = ops.cast(ops.where(ok, zeros, -2 - ops.cast(ops.argmin(finite), "int32")),
                        "int32")
        logs = dict(logs)
        # [step, code]: Keras may hand the logs of several steps to the
        # callback out of order (`PruningCallback.async_safe`).
        logs[ZEROS_KEY] = ops.stack([ops.cast(step, "int32"), code])
        return logs, tuple(state)

    def before_step(self):
        """Gives `fit` the train function of the coming step: with the
        update if one is due after it."""
        if self._clock is None:  # the first step: read where training starts
            self.sync()
        self._clock += 1
        due = self._enabled and bool(
            is_due(self._clock, self._last, self.begin, self.end, self.every))
        if due:
            self._last = self._clock
        function = self._with_update if due else self._plain
        if self.model.train_function is not function:  # a Keras setattr: ~3 us a step
            self.model.train_function = function

    def raise_diverged(self, code: int):
        """Raises the error of an update that logged `code` <= -2: the
        weight at position `-code - 2` held NaN or inf."""
        self.update.raise_diverged(-int(code) - 2)

    def sync(self, zeros=None):
        """Reads the frozen flags, the optimizer's step and the last update
        from the variables (at train begin, each epoch start, after a
        restore). (`zeros`: unused, an update counts them.)"""
        del zeros
        self._enabled = not self.cohort.frozen
        backend.sync_state(self.model)
        self._clock = int(ops.convert_to_numpy(self.model.optimizer.iterations))
        self._last = int(ops.convert_to_numpy(self.cohort.wrappers[0].pruning_step))

    def read_back(self) -> dict:
        """`{key: zeros}` (`Slot.key`) of every pruned weight, counted in
        the variables (at the end of `fit`, once `fit`'s state is written
        back into them; the wrappers' last update steps are in their
        `pruning_step`)."""
        backend.sync_state(self.model)
        return state_lib.count_zeros(self.wrappers)

    def uninstall(self):
        # The next `fit` builds its own train function.
        self.model.train_function = None
