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
        layer_names: `{id(variable): layer name}` for error messages
            (default: the name of the layer owning the variable).

    Example:

    ```python
    update = MaskUpdate(plan, slots)
    zeros = update(0.5, step=100)   # {id(variable): zeros after the update}
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
        if backend.assigns_in_compiled():
            self._assign = backend.Stateful(self._assign_masks)
            self._items = backend.Stateful(self._item_scores)
            self._upcoming = backend.Stateful(self._assign_upcoming)
        else:
            self._pure_masks = backend.compiled(self._new_masks)
            self._pure_items = backend.compiled(self._item_scores_of)
            self._assign = self._assign_masks_pure
            self._items = self._item_scores_pure
            self._upcoming = self._assign_upcoming_pure

    # ---------------------------------------------------------- traced
    def _read(self, with_states=True):
        values = [_value(pw.variable) for pw in self.plan.weights]
        previous = [ops.ones(shape) if s is None else _value(s.mask)
                    for s, shape in zip(self.slots, self.plan.shapes)]
        states = None
        if with_states and self.plan.strategy.criterion.needs_gradients:
            states = [None if s is None or s.score is None else _value(s.score)
                      for s in self.slots]
        return values, previous, states

    def _scores(self, values, states, host, step):
        return self.plan.scores(values, states, step, host)

    def _masks(self, counts, values, previous, states, host, step):
        scores = self._scores(values, states, host, step)
        return self.plan.masks_for(
            scores, [counts[i] for i in range(len(self.plan.groups))], previous)

    def _item_scores(self, host, step):
        return self._item_scores_of(host, step, *self._read())

    def _item_scores_of(self, host, step, values, previous, states):
        scores = self._scores(values, states, host, step)
        items = self.plan.item_tensors(scores, previous)
        return ops.concatenate(items) if items else ops.zeros((0,))

    def _finite(self, values):
        """One flag per changed tensor: True if it holds no NaN or inf."""
        return ops.stack([ops.all(ops.isfinite(values[t])) for t in self.changed]) \
            if self.changed else ops.ones((0,), "bool")

    def _assign_masks(self, counts, host, step):
        values, previous, states = self._read()
        finite = self._finite(values)

        def assign():
            masks = self._masks(counts, values, previous, states, host, step)
            zeros = []
            for t in self.changed:
                slot = self.slots[t]
                slot.mask.assign(ops.cast(masks[t], slot.mask.dtype))
                variable = slot.weight.variable
                value = apply_mask(values[t], masks[t])
                variable.assign(value)
                zeros.append(zeros_in(value))
                if self._reset and slot.score is not None:
                    slot.score.assign(ops.zeros(tuple(slot.score.shape), slot.score.dtype))
            for variable in self.steps:
                variable.assign(ops.cast(step, variable.dtype))
            return ops.stack(zeros) if zeros else ops.zeros((0,), "int32")

        # A diverged weight cannot be ranked: nothing is assigned, and the
        # caller raises, naming it.
        zeros = ops.cond(ops.all(finite), assign,
                         lambda: ops.full((len(self.changed),), -1, "int32"))
        return zeros, finite

    # -------------------------------------------------- pure (JAX, torch)
    def _new_masks(self, counts, host, step, values, previous, states):
        """`(masks, values, zeros, finite)` of the changed tensors: the
        update as a pure function of the values read from the variables."""
        finite = self._finite(values)
        masks = self._masks(counts, values, previous, states, host, step)
        masks = [masks[t] for t in self.changed]
        new = [apply_mask(values[t], m) for t, m in zip(self.changed, masks)]
        zeros = ops.stack([zeros_in(v) for v in new]) if new else ops.zeros((0,), "int32")
        return masks, new, zeros, finite

    def _assign_masks_pure(self, counts, host, step):
        values, previous, states = self._read()
        masks, new, zeros, finite = self._pure_masks(counts, host, step, values, previous, states)
        if not bool(np.all(ops.convert_to_numpy(finite))):
            return ops.full((len(self.changed),), -1, "int32"), finite
        for t, mask, value in zip(self.changed, masks, new):
            slot = self.slots[t]
            slot.mask.assign(ops.cast(mask, slot.mask.dtype))
            slot.weight.variable.assign(value)
            if self._reset and slot.score is not None:
                slot.score.assign(ops.zeros(tuple(slot.score.shape), slot.score.dtype))
        for variable in self.steps:  # one buffer each: JAX donates them to `fit`
            variable.assign(ops.copy(ops.cast(step, variable.dtype)))
        return zeros, finite

    def _item_scores_pure(self, host, step):
        return self._pure_items(host, step, *self._read())

    def _assign_upcoming_pure(self, counts, host, step):
        values, previous, states = self._read(with_states=not self._reset)
        masks, _, _, _ = self._pure_masks(counts, host, step, values, previous, states)
        for t, mask in zip(self.changed, masks):
            slot = self.slots[t]
            if slot.next_mask is not None:
                slot.next_mask.assign(ops.cast(mask, slot.next_mask.dtype))
        return ops.zeros(())

    def _assign_upcoming(self, counts, host, step):
        values, previous, states = self._read(with_states=not self._reset)
        masks = self._masks(counts, values, previous, states, host, step)
        for t in self.changed:
            slot = self.slots[t]
            if slot.next_mask is not None:
                slot.next_mask.assign(ops.cast(masks[t], slot.next_mask.dtype))
        return ops.zeros(())

    # ------------------------------------------------------------ host
    def _host(self, step):
        host = self.plan.host_scores([pw.variable for pw in self.plan.weights], step)
        return None if host is None else [ops.convert_to_tensor(h) for h in host]

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
            `{id(variable): zeros}` for every variable whose mask changed.
        """
        host = self._host(step)
        step_t = self._tensor(step, backend.step_dtype())
        counts = self._counts(sparsity, final_sparsity, host, step_t)
        zeros, finite = self._assign(self._tensor(counts), host, step_t)
        zeros = np.asarray(ops.convert_to_numpy(zeros)).reshape(-1)
        if len(zeros) and zeros[0] < 0:
            finite = np.asarray(ops.convert_to_numpy(finite)).reshape(-1)
            bad = self.slots[self.changed[int(np.argmin(finite))]].weight
            layer = self.layer_names.get(id(bad.variable), bad.layer.name)
            raise ValueError(
                f"Weight '{bad.name}' of layer '{layer}' holds NaN or infinite values, "
                "so it cannot be ranked for pruning; the training has diverged (lower "
                f"the learning rate or check the data). Received: layer={layer}"
            )
        if upcoming is not None and any(self.slots[t].next_mask is not None
                                        for t in self.changed):
            next_sparsity, next_step = upcoming
            host = self._host(next_step)
            step_t = self._tensor(next_step, backend.step_dtype())
            counts = self._counts(next_sparsity, final_sparsity, host, step_t)
            self._upcoming(self._tensor(counts), host, step_t)
        return {id(self.slots[t].weight.variable): int(z) for t, z in zip(self.changed, zeros)}
