"""`Plan`: a strategy applied to one model.

The plan lists the model's prunable tensors and its groups (one tensor, or
the tensors sharing units), and computes masks in three steps that the
training runtime compiles: `scores` (pure), `counts` (host side, from the
allocation: shapes alone, or item scores for rankings across tensors) and
`masks_for` (pure). `compute_masks` is their eager composition.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from keras import ops

from tfprune._masks.units import UnitGroup
from tfprune.strategies._allocation import Candidate

__all__ = ["Plan", "PlanGroup"]


# ------------------------------------------------------------------ plan
@dataclasses.dataclass
class PlanGroup:
    """One unit of decision of a plan (see `Plan`)."""

    name: str
    layer: str
    group: UnitGroup
    granularity: object
    protected: bool


class Plan:
    """A strategy applied to one model.

    Attributes:
        strategy: the (resolved) `Strategy`.
        weights: every prunable `PrunableWeight` of the model, in order
            (with `Units`, followed by the recurrent cells' biases, which are
            masked with their units); masks, previous masks and states are
            lists aligned with it.
        groups: the `PlanGroup`s; their `UnitGroup` slices index `weights`.
    """

    def __init__(self, strategy, weights, groups):
        self.strategy, self.weights, self.groups = strategy, weights, groups
        # Read at every update: fixed with the weights, so computed once.
        self._shapes = [tuple(int(d) for d in pw.variable.shape) for pw in weights]
        self._scored = sorted({t for g in groups if not g.protected for t in g.group.tensors})
        self._sizes = [sum(math.prod(self._shapes[t]) for t in g.group.scored_tensors)
                       for g in groups]

    @property
    def protected(self) -> list:
        """Names of the protected groups."""
        return [g.name for g in self.groups if g.protected]

    def only(self, names) -> Plan:
        """The same plan with every group not in `names` protected: those
        keep their masks, and the allocation sees them as protected."""
        names = set(names)
        groups = [g if g.name in names else dataclasses.replace(g, protected=True)
                  for g in self.groups]
        return Plan(self.strategy, self.weights, groups)

    @property
    def shapes(self) -> list:
        """Shapes of `weights`, as tuples of ints."""
        return self._shapes

    @property
    def scored(self) -> list:
        """Indices of the tensors the unprotected groups score."""
        return self._scored

    def candidates(self, scores=None, previous=None) -> list:
        """The `Candidate`s the allocation sees (with the item scores of the
        unprotected groups if `scores` is given)."""
        items = None
        if scores is not None:
            items = [_numpy(t) for t in self.item_tensors(scores, previous)]
        return self._candidates(items)

    def _candidates(self, items=None) -> list:
        """Candidates with `items`: 1-D arrays of item scores, one per
        unprotected group in order (None: without scores)."""
        shapes, out, i = self.shapes, [], 0
        for g, n in zip(self.groups, self._sizes):
            c = Candidate(g.name, n, g.layer, protected=g.protected,
                          max_sparsity=g.granularity.max_sparsity)
            if items is not None and not g.protected:
                c.scores, c.sizes = items[i], g.granularity.item_sizes(g.group, shapes)
                i += 1
            out.append(c)
        return out

    # ----------------------------------------------------- host side
    def counts(self, sparsity, final_sparsity=None, items=None) -> list:
        """Items each group loses at an overall `sparsity` (host side).

        Args:
            sparsity: the overall target of the allocation.
            final_sparsity: the schedule's final target (`PerLayer`).
            items: for allocations that rank scores (`Global`), the item
                scores of the unprotected groups (`item_tensors`, as arrays).

        Returns:
            One count per group (0 for protected groups), for `masks_for`.
        """
        targets = self.strategy.allocation.allocate(self._candidates(items), sparsity,
                                                    final_sparsity)
        shapes = self.shapes
        return [0 if g.protected else g.granularity.count(g.group, shapes, targets[g.name])
                for g in self.groups]

    def host_scores(self, values, step=0) -> list:
        """Scores of criteria computed on the host (`Random`), for the
        tensors in `scored`; None for traceable criteria."""
        criterion = self.strategy.criterion
        if criterion.traceable:
            return None
        return [criterion.score(values[t], None, step=step, key=t) for t in self.scored]

    # ---------------------------------------------------------- pure
    def scores(self, values, states=None, step=0, host=None) -> list:
        """Criterion scores aligned with `weights` (None for the tensors no
        unprotected group uses). `host` replaces them with `host_scores`."""
        scores = [None] * len(self.weights)
        criterion = self.strategy.criterion
        for n, t in enumerate(self.scored):
            if host is not None:
                scores[t] = host[n]
            else:
                state = None if states is None else states[t]
                scores[t] = criterion.score(values[t], state, step=step, key=t)
        return scores

    def item_tensors(self, scores, previous=None) -> list:
        """The item scores of each unprotected group, as 1-D tensors."""
        return [g.granularity.item_tensor(g.group, scores, previous)
                for g in self.groups if not g.protected]

    def masks_for(self, scores, counts, previous=None) -> list:
        """Every mask, given `counts` (from `counts`; ints or int tensors).

        Pure `keras.ops`: this is what the compiled mask update traces.
        Protected groups keep their previous mask.
        """
        masks = [
            ops.ones(shape) if previous is None else previous[i]
            for i, shape in enumerate(self.shapes)
        ]
        # The groups of one granularity are handed over together: it may
        # select several at once (`Unstructured`: tensors of one size).
        by_granularity = {}
        for g, count in zip(self.groups, counts):
            if not g.protected:
                by_granularity.setdefault(id(g.granularity), (g.granularity, [], []))
                _, groups, group_counts = by_granularity[id(g.granularity)]
                groups.append(g.group)
                group_counts.append(count)
        for granularity, groups, group_counts in by_granularity.values():
            new = granularity.masks_of_groups(groups, scores, group_counts, previous)
            for t, mask in new.items():
                masks[t] = mask
        return masks

    def compute_masks(self, sparsity, *, previous=None, states=None, step=0, final_sparsity=None):
        """Every new mask at an overall `sparsity` (pure: nothing is assigned).

        Eager composition of `scores`, `counts` and `masks_for`; the
        training runtime runs the same pieces compiled. Only the tensors of
        unprotected groups are scored; the others keep their previous mask.

        Args:
            sparsity: the overall target of the allocation.
            previous: masks aligned with `weights` (None: all ones).
            states: criterion states aligned with `weights` (gradient-based
                criteria; None entries for tensors without one), or None.
            step: the training step (for `Random`).
            final_sparsity: the schedule's final target (for `PerLayer`).

        Returns:
            A list of masks aligned with `weights`.
        """
        values = [ops.convert_to_tensor(pw.variable) for pw in self.weights]
        scores = self.scores(values, states, step, self.host_scores(values, step))
        items = None
        if self.strategy.allocation.needs_scores:
            items = [_numpy(t) for t in self.item_tensors(scores, previous)]
        counts = self.counts(sparsity, final_sparsity, items)
        return self.masks_for(scores, counts, previous)


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float32).reshape(-1)
