"""`Cohort`: the wrappers of a model whose masks are updated together.

`PruningCallback` plans the whole model once (`plan_cohorts`) and updates
each cohort with one `MaskUpdate`; the update inside the train step
(`in_step`) reads the same cohorts.
"""

from __future__ import annotations

import dataclasses

from tfprune._training.update import is_due


@dataclasses.dataclass
class Cohort:
    """Wrappers whose masks are updated together, with one schedule.

    Attributes:
        wrappers: the `PruningWrapper`s, in model order.
        plan: the `tfprune.strategies.Plan` an update applies: the model's,
            with the groups of the other cohorts' wrappers protected.
        schedule: the wrappers' schedule.
        update: the cohort's `MaskUpdate`, made by `PruningCallback` on
            first use (None until then).
        last: the step of each wrapper's last update (-1: never), aligned
            with `wrappers`: the host's copy of their `pruning_step`
            (`read_last`), advanced by `updated`.
    """

    wrappers: list
    plan: object
    schedule: object
    update: object = None
    last: list = dataclasses.field(default_factory=list)

    @property
    def frozen(self) -> bool:
        """Whether a wrapper of the cohort is frozen (`QualityGuard`): its
        masks are then kept."""
        return any(getattr(w, "frozen", False) for w in self.wrappers)

    def due(self, step: int, every: int) -> bool:
        """Whether an update of the cohort is due at `step` (`is_due`, with
        at least `every` steps between updates); never while frozen."""
        if self.frozen:
            return False
        return any(bool(is_due(step, last, w.schedule.begin_step, w.schedule.end_step, every))
                   for w, last in zip(self.wrappers, self.last))

    def read_last(self) -> None:
        """Reads each wrapper's last update step from its `pruning_step`."""
        self.last = [int(w.pruning_step.numpy()) for w in self.wrappers]

    def updated(self, step: int) -> None:
        """Records an update of every wrapper at `step` (the update itself
        assigns their `pruning_step`)."""
        self.last = [step] * len(self.wrappers)


def plan_cohorts(model, wrappers) -> tuple:
    """`(plan, slots, cohorts)` for the wrappers of `model`.

    The plan covers the whole model; groups without masks (layers left
    unwrapped) are protected. `slots` is aligned with `plan.weights` (None
    where there is no mask). Wrappers that share one schedule (as
    `tfprune.prune` makes them) form one cohort; otherwise each wrapper is
    a cohort of its own, which only allocations that do not rank layers
    together allow.

    Raises:
        ValueError: if the wrappers do not share one strategy, or a
            model-wide allocation meets wrappers with different schedules.
    """
    strategies = [w.strategy for w in wrappers]
    if any(s != strategies[0] for s in strategies):
        names = {w.name: w.strategy for w in wrappers}
        raise ValueError(
            "The PruningWrapper layers of a model must share one strategy: a plan "
            "covers the whole model. Prune it with one `tfprune.prune(model, "
            f"sparsity, strategy=...)` call. Received: strategies={names!r}"
        )
    plan = strategies[0].plan(model)
    # Which slot, and which wrapper, holds each variable of the plan (an
    # object map, not a result).
    slots, owner = {}, {}
    for w in wrappers:
        for slot in w.slots:
            slots[id(slot.weight.variable)] = slot
            owner[id(slot.weight.variable)] = w
    aligned = [slots.get(id(pw.variable)) for pw in plan.weights]
    masked = {g.name for g in plan.groups
              if all(aligned[t] is not None for t in g.group.tensors)}
    plan = plan.only(masked)
    schedules = [w.schedule for w in wrappers]
    if all(s == schedules[0] for s in schedules):
        return plan, aligned, [Cohort(list(wrappers), plan, schedules[0])]
    if plan.strategy.allocation.model_wide:
        by_wrapper = {w.name: w.schedule for w in wrappers}
        raise ValueError(
            f"{type(plan.strategy.allocation).__name__} allocation splits one target "
            "across the whole model, so every PruningWrapper must share one "
            f"schedule. Received: schedules={by_wrapper!r}"
        )
    cohorts = []
    for w in wrappers:
        mine = [g.name for g in plan.groups
                if owner.get(id(plan.weights[g.group.tensors[0]].variable)) is w]
        cohorts.append(Cohort([w], plan.only(mine), w.schedule))
    return plan, aligned, cohorts
