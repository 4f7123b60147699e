"""`MaskUpdate`: one plan's mask update as a compiled function.

The update of every mask of a plan reads the weights, masks and criterion
states, scores the weights, prunes the counts it is given, assigns the new
masks, zeroes the pruned weights and counts the zeros, all in one traced
function (`tf.function` on TensorFlow): one call, no host round trip inside.
What depends on shapes alone (how many items each group loses at a
sparsity, from the allocation) is computed on the host from the schedule and
enters as an int tensor, so the function is traced once per plan. Two
things stay on the host by design: `Random` scores (numpy, for the same
masks as in 0.1.0) enter as inputs, and rankings across tensors (`Global`)
fetch the item scores once per update (a bounded-memory selection over any
number of items; see `tfprune._masks.ranking`).

The function is not compiled with XLA: masks must be bit-identical to the
eager computation, and XLA may reorder the sums that block and unit scores
are made of.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from tfprune._base import backend
from tfprune._masks.core import apply_mask
from tfprune._masks.core import zeros_in


def is_due(step, last, begin, end, every):
    """Whether masks last updated at step `last` (-1: never) are due for an
    update at `step`, under a schedule from `begin` to `end` with at least
    `every` steps between updates: once the schedule has begun, at the first
    chance, then every `every` steps, and always at the first chance at or
    after `end` (so the final sparsity is reached then, whatever `every`
    is); never again after an update at or after `end`.

    The one definition of the rule: the callback applies it to Python ints
    between steps, the in-step update to tensors inside the compiled train
    step (`&` and `|` work on both).

    Example:

    >>> [bool(is_due(step, 10, 0, 25, 10)) for step in (15, 20, 25)]
    [False, True, True]
    >>> bool(is_due(30, 25, 0, 25, 10))
    False
    """
    return (step >= begin) & (
        (last < 0) | ((last < end) & ((step - last >= every) | (step >= end))))


def _value(variable):
    return ops.convert_to_tensor(variable)


class MaskUpdate:
    """Updates the masks of one `Plan`, compiled.

    Args:
        plan: the `tfprune.strategies.Plan`.
        slots: the wrappers' `Slot`s aligned with `plan.weights` (None where
            a weight has no mask: it is then treated as all ones and never
            assigned).
        steps: step variables (the wrappers' `pruning_step`) set to the
            step of each update, in the same call.
        layer_names: `{key: layer name}` (keys: `Slot.key`) for error
            messages (default: the name of the layer owning the variable).

    Example:

    ```python
    update = MaskUpdate(plan, slots)
    zeros = update(0.5, step=100)   # {slot key: zeros after the update}
    ```
    """

    def __init__(self, plan, slots, steps=(), layer_names=None):
        self.plan = plan
        self.slots = list(slots)
        self.steps = list(steps)
        self.layer_names = dict(layer_names or {})
        criterion = plan.strategy.criterion
        self.changed = [t for t in plan.scored if self.slots[t] is not None]
        self._needs_items = plan.strategy.allocation.needs_scores
        self._reset = criterion.reset_after_update
        self._item_shape_cache = None
        self._counts_cache = {}
        # One path on every backend: the update is the pure function
        # `_new_masks` of the values read from the variables, then its
        # assignment. On TensorFlow both run in one traced function that
        # reads and assigns the variables itself (`backend.Stateful`; the
        # in-step update traces the same `_assign_masks` into the train
        # step); elsewhere the pure function is compiled (`jax.jit`) and the
        # assignment follows it.
        if backend.assigns_in_compiled():
            self._compute = self._new_masks
            self._compute_items = self._item_scores_of
            # Between steps the step and the counts enter as one int64
            # array: one constant to make per call instead of two.
            packed = backend.Stateful(self._assign_packed)
            self._assign = lambda counts, host, step: packed(
                np.concatenate([[step], counts]).astype(np.int64), host)
            self._items = backend.Stateful(self._item_scores)
            self._upcoming = backend.Stateful(self._assign_upcoming)
        else:
            self._compute = backend.compiled(self._new_masks)
            self._compute_items = backend.compiled(self._item_scores_of)
            self._assign = self._assign_masks
            self._items = self._item_scores
            self._upcoming = self._assign_upcoming

    # ------------------------------------------------------------ update
    def _read(self, with_states=True):
        weights, masks, scores = self.inputs()
        values = [_value(v) for v in weights]
        previous = [ops.ones(shape) if m is None else _value(m)
                    for m, shape in zip(masks, self.plan.shapes)]
        states = None
        if with_states and scores is not None:
            states = [None if v is None else _value(v) for v in scores]
        return values, previous, states

    def _scores(self, values, states, host, step):
        return self.plan.scores(values, states, step, host)

    def _masks(self, counts, values, previous, states, host, step):
        scores = self._scores(values, states, host, step)
        return self.plan.masks_for(
            scores, [counts[i] for i in range(len(self.plan.groups))], previous)

    def _item_scores_of(self, host, step, values, previous, states):
        scores = self._scores(values, states, host, step)
        items = self.plan.item_tensors(scores, previous)
        return ops.concatenate(items) if items else ops.zeros((0,))

    def _finite(self, values):
        """One flag per changed tensor: True if it holds no NaN or inf."""
        return ops.stack([ops.all(ops.isfinite(values[t])) for t in self.changed]) \
            if self.changed else ops.ones((0,), "bool")

    def _new_masks(self, counts, host, step, values, previous, states):
        """`(masks, values, zeros, finite)` of the changed tensors: the
        update as a pure function of the values read from the variables."""
        finite = self._finite(values)
        masks = self._masks(counts, values, previous, states, host, step)
        masks = [masks[t] for t in self.changed]
        new = [apply_mask(values[t], m) for t, m in zip(self.changed, masks)]
        zeros = ops.stack([zeros_in(v) for v in new]) if new else ops.zeros((0,), "int32")
        return masks, new, zeros, finite

    def _write(self, masks, new, zeros, step):
        """Assigns an update's masks, zeroed weights and step; reset
        scores. Returns `zeros`."""
        for t, mask, value in zip(self.changed, masks, new):
            slot = self.slots[t]
            slot.mask.assign(ops.cast(mask, slot.mask.dtype))
            slot.weight.variable.assign(value)
            if self._reset and slot.score is not None:
                slot.score.assign(ops.zeros(tuple(slot.score.shape), slot.score.dtype))
        for variable in self.steps:  # one buffer each: JAX donates them to `fit`
            variable.assign(ops.copy(ops.cast(step, variable.dtype)))
        return zeros

    def _assign_masks(self, counts, host, step):
        """`(zeros, finite)`: the update, assigned unless a changed weight
        holds NaN or inf (then nothing is, and `zeros` is all -1: a
        diverged weight cannot be ranked; the caller raises, naming it)."""
        values, previous, states = self._read()
        failed = ops.full((len(self.changed),), -1, "int32")
        if backend.assigns_in_compiled():
            # Traced: the update runs in the branch of the graph that the
            # check takes (computed before the branch, its results would be
            # fed into it, which costs the call about a tenth here).
            def update():
                masks, new, zeros, _ = self._compute(counts, host, step, values, previous,
                                                     states)
                return self._write(masks, new, zeros, step)

            finite = self._finite(values)
            return ops.cond(ops.all(finite), update, lambda: failed), finite
        masks, new, zeros, finite = self._compute(counts, host, step, values, previous, states)
        if not bool(np.all(ops.convert_to_numpy(finite))):
            return failed, finite
        return self._write(masks, new, zeros, step), finite

    def _assign_packed(self, packed, host):
        """`_assign_masks` of `packed = [step, *counts]` (int64)."""
        return self._assign_masks(ops.cast(packed[1:], "int32"), host,
                                  ops.cast(packed[0], backend.step_dtype()))

    def _item_scores(self, host, step):
        return self._compute_items(host, step, *self._read())

    def _assign_upcoming(self, counts, host, step):
        """Stores the masks the next update will give in the slots'
        `next_mask` (for a regularizer's penalty)."""
        values, previous, states = self._read(with_states=not self._reset)
        masks, _, _, _ = self._compute(counts, host, step, values, previous, states)
        for t, mask in zip(self.changed, masks):
            slot = self.slots[t]
            if slot.next_mask is not None:
                slot.next_mask.assign(ops.cast(mask, slot.next_mask.dtype))
        return ops.zeros(())

    # ------------------------------------------------------------ host
    def _host(self, step):
        host = self.plan.host_scores([pw.variable for pw in self.plan.weights], step)
        return None if host is None else [ops.convert_to_tensor(h) for h in host]

    def _at(self, step) -> tuple:
        """`(host scores, step)` of an update at training `step`, as the
        compiled update takes them."""
        return self._host(step), self._tensor(step, backend.step_dtype())

    # ------------------------------------------------------------ public
    def counts(self, sparsity, final_sparsity=None, step=0) -> np.ndarray:
        """Items each group of the plan loses at an overall `sparsity`, at
        training `step` (host side; an allocation that ranks scores across
        tensors, `Global`, reads the weights for it)."""
        if not self._needs_items:  # no weights read: the in-step table asks every step
            return self._counts(sparsity, final_sparsity, None, None)
        return self._counts(sparsity, final_sparsity, *self._at(step))

    @property
    def changed_slots(self) -> list:
        """The `Slot`s an update assigns, in the order of its zero counts."""
        return [self.slots[t] for t in self.changed]

    @property
    def resets_scores(self) -> bool:
        """Whether an update sets the criterion's scores back to zero."""
        return bool(self._reset)

    def inputs(self) -> tuple:
        """`(weights, masks, scores)`: the variables an update reads,
        aligned with `plan.weights` (None where a weight has no mask or
        score; `scores` is None when the criterion keeps none)."""
        weights = [pw.variable for pw in self.plan.weights]
        masks = [None if s is None else s.mask for s in self.slots]
        scores = None
        if self.plan.strategy.criterion.needs_gradients:
            scores = [None if s is None else s.score for s in self.slots]
        return weights, masks, scores

    def pure(self, counts, step, values, previous, states):
        """`(masks, values, zeros, finite)` of the changed tensors (in the
        order of `changed`): the update as a pure function of the values of
        `inputs()` (`previous`: ones where there is no mask), for a compiled
        train step that holds the variables' values itself (JAX). Scores
        drawn on the host are not available here."""
        return self._new_masks(counts, None, step, values, previous, states)

    @property
    def traced_update(self):
        """`(counts, host, step) -> (zeros, finite)`: the update with its
        assignment, to be traced into another compiled function
        (TensorFlow; `zeros` is all -1 when a weight holds NaN or inf and
        nothing was assigned)."""
        return self._assign_masks

    def raise_diverged(self, position: int):
        """Raises the error of an update that met NaN or inf in the changed
        tensor at `position` (in the order of `changed_slots`)."""
        slot = self.slots[self.changed[position]]
        bad = slot.weight
        layer = self.layer_names.get(slot.key, bad.layer.name)
        raise ValueError(
            f"Weight '{bad.name}' of layer '{layer}' holds NaN or infinite values, "
            "so it cannot be ranked for pruning; the training has diverged (lower "
            f"the learning rate or check the data). Received: layer={layer}"
        )

    @staticmethod
    def _tensor(x, dtype=None):
        """`x` as the compiled update takes it: numpy on TensorFlow (made a
        constant by `backend.Stateful`), a tensor elsewhere."""
        if backend.assigns_in_compiled():
            return np.asarray(x, dtype)
        return ops.convert_to_tensor(x, dtype)

    def _counts(self, sparsity, final_sparsity, host, step):
        if not self._needs_items:
            # Counts depend on the targets alone: a constant schedule, and
            # the in-step table's repeated targets, compute them once.
            key = (float(sparsity), None if final_sparsity is None else float(final_sparsity))
            counts = self._counts_cache.get(key)
            if counts is None:
                if len(self._counts_cache) >= 1 << 16:
                    self._counts_cache.clear()
                counts = self._counts_cache[key] = np.asarray(
                    self.plan.counts(sparsity, final_sparsity), np.int32)
            return counts
        flat = np.asarray(ops.convert_to_numpy(self._items(host, step)), np.float32)
        sizes = [math.prod(shape) for shape in self._item_shapes()]
        items = np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []
        counts = self.plan.counts(sparsity, final_sparsity, items)
        return np.asarray(counts, np.int32)

    def _item_shapes(self):
        if self._item_shape_cache is None:  # shapes only: traced on ones, once
            ones = [ops.ones(shape) for shape in self.plan.shapes]
            self._item_shape_cache = [ops.shape(t) for t in self.plan.item_tensors(ones, None)]
        return self._item_shape_cache

    def __call__(self, sparsity, *, step=0, final_sparsity=None, upcoming=None) -> dict:
        """Updates the masks to an overall `sparsity` at training `step`.

        Args:
            sparsity: the overall target.
            step: the training step (`Random` scores depend on it).
            final_sparsity: the schedule's final target (`PerLayer`).
            upcoming: `(sparsity, step)` of the next update; with a
                regularizer, the masks it will give are stored in the
                slots' `next_mask` (the penalty pushes those weights).

        Returns:
            `{key: zeros}` for every tensor whose mask changed, keyed by
            its slot's `key` (the variable's path, unique in the model).
        """
        host, step_t = self._at(step)
        counts = self._counts(sparsity, final_sparsity, host, step_t)
        zeros, finite = self._assign(self._tensor(counts), host, step_t)
        zeros = np.asarray(ops.convert_to_numpy(zeros)).reshape(-1)
        if len(zeros) and zeros[0] < 0:
            finite = np.asarray(ops.convert_to_numpy(finite)).reshape(-1)
            self.raise_diverged(int(np.argmin(finite)))
        if upcoming is not None and any(self.slots[t].next_mask is not None
                                        for t in self.changed):
            next_sparsity, next_step = upcoming
            host, step_t = self._at(next_step)
            counts = self._counts(next_sparsity, final_sparsity, host, step_t)
            self._upcoming(self._tensor(counts), host, step_t)
        return {self.slots[t].key: int(z) for t, z in zip(self.changed, zeros)}
