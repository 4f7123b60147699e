"""Sparsity schedules: map a training step to a target sparsity.

A schedule is a small serializable object. It answers one question, "what
sparsity should the pruned tensors have at step `t`?", and exposes the steps
between which it changes (`begin_step`, `end_step`). How often masks are
updated is the `PruningCallback`'s business, not the schedule's; the callback
makes sure the final sparsity is applied as soon as `end_step` is reached.

Wherever tfprune takes a sparsity, it accepts a number (a constant target)
or a schedule; `tfprune.schedules.get` normalizes both.
"""

from __future__ import annotations

import keras

from tfprune._base.config import _Config
from tfprune._base.validation import check_sparsity
from tfprune._base.validation import check_step
from tfprune._base.validation import received

__all__ = ["PruningSchedule", "Constant", "PolynomialDecay", "get", "serialize", "deserialize"]


class PruningSchedule(_Config):
    """Base class of sparsity schedules.

    Subclasses implement `__call__(step) -> float` and `get_config()`, and set
    `begin_step` (no pruning before it) and `end_step` (the sparsity no longer
    changes from it on).

    Example:

    ```python
    @keras.saving.register_keras_serializable("my_project")
    class Steps(tfprune.schedules.PruningSchedule):
        def __init__(self, sparsities, every):
            self.sparsities, self.every = list(sparsities), every
            self.begin_step, self.end_step = 0, every * (len(sparsities) - 1)

        def __call__(self, step):
            return self.sparsities[min(step // self.every, len(self.sparsities) - 1)]

        def get_config(self):
            return {"sparsities": self.sparsities, "every": self.every}
    ```
    """

    begin_step: int = 0
    end_step: int = 0

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    @property
    def final_sparsity(self) -> float:
        """The sparsity the schedule settles at, from `end_step` on."""
        return float(self(self.end_step))

    def get_config(self) -> dict:
        raise NotImplementedError


@keras.saving.register_keras_serializable("tfprune")
class Constant(PruningSchedule):
    """A fixed target sparsity, applied from `begin_step` on.

    Args:
        sparsity: fraction of weights to prune, in [0, 1).
        begin_step: first step at which the tensors are pruned. Defaults to 0.

    Example:

    >>> s = Constant(0.8, begin_step=100)
    >>> s(0), s(100), s(10_000)
    (0.0, 0.8, 0.8)
    """

    def __init__(self, sparsity: float, begin_step: int = 0):
        self.sparsity = check_sparsity("sparsity", sparsity)
        self.begin_step = check_step("begin_step", begin_step)
        self.end_step = self.begin_step

    def __call__(self, step: int) -> float:
        return self.sparsity if int(step) >= self.begin_step else 0.0

    def get_config(self) -> dict:
        return {"sparsity": self.sparsity, "begin_step": self.begin_step}


@keras.saving.register_keras_serializable("tfprune")
class PolynomialDecay(PruningSchedule):
    """Sparsity that rises from `initial_sparsity` to `final_sparsity`.

    The gradual schedule of Zhu & Gupta (2017), "To prune, or not to prune":

        s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0)) ** power

    for `t_0 <= t <= t_1`; 0 before `begin_step` (t_0) and `final_sparsity`
    from `end_step` (t_1) on. With the default `power=3` the sparsity rises
    fast at first, while the network still has redundant weights, and slowly
    near the end.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1) and not below
            `initial_sparsity`.
        begin_step: step at which pruning starts.
        end_step: step at which `final_sparsity` is reached; `>= begin_step`.
        power: exponent of the decay, `> 0`. Defaults to 3 (cubic).

    Example:

    >>> s = PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000)
    >>> round(s(500), 4), s(1000), s(5000)
    (0.7875, 0.9, 0.9)
    """

    def __init__(
        self,
        initial_sparsity: float,
        final_sparsity: float,
        begin_step: int,
        end_step: int,
        power: float = 3,
    ):
        self.initial_sparsity = check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity_ = check_sparsity("final_sparsity", final_sparsity)
        if self.final_sparsity_ < self.initial_sparsity:
            raise ValueError(
                "`final_sparsity` must not be below `initial_sparsity` "
                f"({self.initial_sparsity}): pruned weights are never revived. "
                f"{received('final_sparsity', final_sparsity)}"
            )
        self.begin_step = check_step("begin_step", begin_step)
        self.end_step = check_step("end_step", end_step)
        if self.end_step < self.begin_step:
            raise ValueError(
                f"`end_step` must be >= `begin_step` ({self.begin_step}). "
                f"{received('end_step', end_step)}"
            )
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
            raise ValueError(f"`power` must be a number > 0. {received('power', power)}")
        self.power = power

    @property
    def final_sparsity(self) -> float:
        return self.final_sparsity_

    def __call__(self, step: int) -> float:
        step = int(step)
        if step < self.begin_step:
            return 0.0
        if step >= self.end_step:
            return self.final_sparsity_
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity_ + (self.initial_sparsity - self.final_sparsity_) * (
            1.0 - progress
        ) ** self.power

    def get_config(self) -> dict:
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity_,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
        }


def serialize(schedule: PruningSchedule) -> dict:
    """Returns the Keras config dict of a schedule."""
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config: dict) -> PruningSchedule:
    """Rebuilds a schedule from `serialize`'s output."""
    return keras.saving.deserialize_keras_object(config)


def get(identifier, name: str = "sparsity") -> PruningSchedule:
    """Normalizes a sparsity argument into a schedule.

    Args:
        identifier: a number in [0, 1) (becomes `Constant`), a
            `PruningSchedule`, or a serialized schedule (dict).
        name: the argument's name, used in error messages.

    Returns:
        A `PruningSchedule`.

    Raises:
        TypeError: if `identifier` is none of the above.
        ValueError: if the number is outside [0, 1).

    Example:

    >>> get(0.5)
    Constant(sparsity=0.5, begin_step=0)
    """
    if isinstance(identifier, PruningSchedule):
        return identifier
    if isinstance(identifier, dict):
        schedule = deserialize(identifier)
        if isinstance(schedule, PruningSchedule):
            return schedule
    elif isinstance(identifier, (int, float)) and not isinstance(identifier, bool):
        return Constant(check_sparsity(name, identifier))
    raise TypeError(
        f"`{name}` must be a number in [0, 1) or a "
        f"`tfprune.schedules.PruningSchedule`. {received(name, identifier)}"
    )
