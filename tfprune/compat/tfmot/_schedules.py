"""tfmot's pruning schedules: `(should_prune, sparsity)` for a step.

A schedule is called with the step of the batch about to run, counted from
1 (the first training batch is step 1, as in tfmot, whose wrapper counts
its training calls). It answers whether the masks are updated before that
batch and to which sparsity. tfmot's rule: an update happens at `step`
when `step >= begin_step`, `step <= end_step` (or `end_step == -1`) and
`(step - begin_step) % frequency == 0`; with `begin_step=0` the first
update is at step `frequency`.
"""

from __future__ import annotations

import abc
import numbers

from keras import ops

from tfprune._base.validation import received

__all__ = ["ConstantSparsity", "PolynomialDecay", "PruningSchedule", "should_prune_in_step"]


def should_prune_in_step(step, begin_step, end_step, frequency):
    """tfmot's update rule, as a boolean tensor (see the module docstring)."""
    step = ops.convert_to_tensor(step, "int64")
    after_begin = ops.greater_equal(step, begin_step)
    before_end = ops.logical_or(ops.less_equal(step, end_step), end_step < 0)
    on_time = ops.equal(ops.mod(step - begin_step, frequency), 0)
    return ops.logical_and(ops.logical_and(after_begin, before_end), on_time)


def _check_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer. {received(name, value)}")
    return int(value)


def _validate_step(begin_step, end_step, frequency, allow_negative_1):
    begin_step = _check_int("begin_step", begin_step)
    end_step = _check_int("end_step", end_step)
    frequency = _check_int("frequency", frequency)
    if begin_step < 0:
        raise ValueError(f"begin_step should be >= 0. {received('begin_step', begin_step)}")
    if not allow_negative_1 and end_step == -1:
        raise ValueError(f"end_step cannot be -1. {received('end_step', end_step)}")
    if end_step != -1:
        if end_step < 0:
            raise ValueError(f"end_step can be -1 or >= 0. {received('end_step', end_step)}")
        if end_step < begin_step:
            raise ValueError(
                "begin_step should be <= end_step if end_step != -1. "
                f"{received('end_step', end_step)}")
    if frequency <= 0:
        raise ValueError(f"frequency should be > 0. {received('frequency', frequency)}")
    return begin_step, end_step, frequency


def _validate_sparsity(sparsity, name):
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(f"{name} must be a number. {received(name, sparsity)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{name} must be in range [0,1). {received(name, sparsity)}")
    return float(sparsity)


class PruningSchedule(abc.ABC):
    """Base class of tfmot pruning schedules.

    A subclass implements `__call__(step)`, returning `(should_prune,
    sparsity)` (Python values or tensors), and `get_config()`, returning
    `{"class_name": ..., "config": {...}}` as tfmot's schedules do.

    Example:

    ```python
    class EveryStep(tfmot.sparsity.keras.PruningSchedule):
        def __init__(self, sparsity):
            self.sparsity = sparsity

        def __call__(self, step):
            return True, self.sparsity

        def get_config(self):
            return {"class_name": "EveryStep", "config": {"sparsity": self.sparsity}}
    ```
    """

    @abc.abstractmethod
    def __call__(self, step):
        raise NotImplementedError("PruningSchedule implementation must override __call__")

    @abc.abstractmethod
    def get_config(self):
        raise NotImplementedError("PruningSchedule implementation override get_config")

    @classmethod
    def from_config(cls, config):
        """The schedule from the `config` part of `get_config()`."""
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash(type(self).__name__)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
        return f"{type(self).__name__}({args})"


class ConstantSparsity(PruningSchedule):
    """One sparsity, applied every `frequency` steps from `begin_step`.

    Args:
        target_sparsity: the sparsity, in [0, 1).
        begin_step: first step at which masks may be updated.
        end_step: last such step; -1 (default) for no end.
        frequency: steps between two updates. Defaults to 100.

    Example:

    >>> schedule = ConstantSparsity(0.5, begin_step=0, frequency=100)
    >>> [bool(schedule(step)[0]) for step in (1, 100, 150, 200)]
    [False, True, False, True]
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.begin_step, self.end_step, self.frequency = _validate_step(
            begin_step, end_step, frequency, True)
        self.target_sparsity = _validate_sparsity(target_sparsity, "target_sparsity")

    def __call__(self, step):
        return (should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                ops.convert_to_tensor(self.target_sparsity, "float32"))

    def get_config(self):
        return {"class_name": "ConstantSparsity", "config": {
            "target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
            "end_step": self.end_step, "frequency": self.frequency}}


class PolynomialDecay(PruningSchedule):
    """Sparsity from `initial_sparsity` to `final_sparsity` along a
    polynomial of `power`, between `begin_step` and `end_step`:
    `final + (initial - final) * (1 - p) ** power`, with `p` the fraction of
    the way (clipped to [0, 1]), computed in float32 as tfmot does.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first step at which masks may be updated.
        end_step: last such step (not -1).
        power: exponent of the polynomial. Defaults to 3.
        frequency: steps between two updates. Defaults to 100.

    Example:

    >>> schedule = PolynomialDecay(0.5, 0.8, begin_step=0, end_step=844)
    >>> should, sparsity = schedule(800)
    >>> bool(should), round(float(sparsity), 5)
    (True, 0.79996)
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step, power=3,
                 frequency=100):
        self.begin_step, self.end_step, self.frequency = _validate_step(
            begin_step, end_step, frequency, False)
        if self.end_step == self.begin_step:
            raise ValueError(
                "PolynomialDecay needs end_step > begin_step (its progress divides by "
                f"end_step - begin_step). {received('end_step', end_step)}")
        self.initial_sparsity = _validate_sparsity(initial_sparsity, "initial_sparsity")
        self.final_sparsity = _validate_sparsity(final_sparsity, "final_sparsity")
        if isinstance(power, bool) or not isinstance(power, numbers.Real):
            raise TypeError(f"power must be a number. {received('power', power)}")
        self.power = power

    def __call__(self, step):
        step = ops.convert_to_tensor(step, "int64")
        progress = ops.divide(ops.cast(step - self.begin_step, "float32"),
                              float(self.end_step - self.begin_step))
        progress = ops.clip(progress, 0.0, 1.0)
        sparsity = ops.add(
            ops.multiply(self.initial_sparsity - self.final_sparsity,
                         ops.power(ops.subtract(1.0, progress), float(self.power))),
            self.final_sparsity)
        return (should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
                ops.cast(sparsity, "float32"))

    def get_config(self):
        return {"class_name": "PolynomialDecay", "config": {
            "initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
            "power": self.power, "begin_step": self.begin_step, "end_step": self.end_step,
            "frequency": self.frequency}}


BUILT_IN = {"ConstantSparsity": ConstantSparsity, "PolynomialDecay": PolynomialDecay}


def deserialize(config, custom_objects=None):
    """A schedule from `get_config()`'s `{"class_name", "config"}`."""
    if isinstance(config, PruningSchedule):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise TypeError(
            "pruning_schedule must be a PruningSchedule or its get_config(). "
            f"{received('pruning_schedule', config)}")
    import keras

    name = config["class_name"]
    cls = BUILT_IN.get(name) or (custom_objects or {}).get(name) \
        or keras.saving.get_custom_objects().get(name)
    if cls is None:
        raise ValueError(
            f"Unknown pruning schedule '{name}': register it with "
            "`keras.saving.register_keras_serializable` or load inside "
            f"`keras.saving.custom_object_scope`. {received('pruning_schedule', config)}")
    return cls.from_config(config["config"])
