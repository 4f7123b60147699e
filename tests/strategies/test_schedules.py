"""Sparsity schedules: values at every phase and normalization by `get`."""

import keras
import pytest

from tfprune import schedules


def test_constant_is_zero_before_begin_step_then_constant():
    s = schedules.Constant(0.8, begin_step=100)
    assert [s(0), s(99), s(100), s(101), s(10_000)] == [0.0, 0.0, 0.8, 0.8, 0.8]
    assert (s.begin_step, s.end_step, s.final_sparsity) == (100, 100, 0.8)


def test_constant_defaults_to_step_zero():
    s = schedules.Constant(0.5)
    assert s(0) == 0.5
    assert s.begin_step == s.end_step == 0


def test_polynomial_decay_matches_zhu_and_gupta_cubic_formula():
    s = schedules.PolynomialDecay(0.1, 0.9, begin_step=10, end_step=30)
    # s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0)) ** 3 at the midpoint.
    assert s(20) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5**3) == pytest.approx(0.8)
    assert s(15) == pytest.approx(0.9 - 0.8 * 0.75**3)
    assert s(25) == pytest.approx(0.9 - 0.8 * 0.25**3)


def test_polynomial_decay_phases():
    s = schedules.PolynomialDecay(0.2, 0.7, begin_step=5, end_step=25)
    assert s(0) == s(4) == 0.0
    assert s(5) == pytest.approx(0.2)
    assert s(25) == 0.7  # exactly, not approximately
    assert s(26) == s(10**6) == 0.7
    values = [s(t) for t in range(5, 26)]
    assert values == sorted(values)
    assert s.final_sparsity == 0.7


@pytest.mark.parametrize(
    "power, expected", [(1, 0.45), (2, 0.7 - 0.5 * 0.25), (0.5, 0.7 - 0.5 * 0.5**0.5)]
)
def test_polynomial_decay_power(power, expected):
    s = schedules.PolynomialDecay(0.2, 0.7, begin_step=0, end_step=10, power=power)
    assert s(5) == pytest.approx(expected)


def test_polynomial_decay_with_begin_equal_end_jumps_to_final():
    s = schedules.PolynomialDecay(0.0, 0.6, begin_step=7, end_step=7)
    assert (s(6), s(7), s(8)) == (0.0, 0.6, 0.6)


def test_get_normalizes_numbers_schedules_and_configs():
    assert schedules.get(0.5) == schedules.Constant(0.5)
    assert schedules.get(0) == schedules.Constant(0.0)
    poly = schedules.PolynomialDecay(0.0, 0.9, 0, 100)
    assert schedules.get(poly) is poly
    assert schedules.get(schedules.serialize(poly)) == poly


@pytest.mark.parametrize(
    "bad",
    ["0.5", None, [0.5], True, keras.saving.serialize_keras_object(keras.layers.Dense(1))],
    ids=["str", "none", "list", "bool", "layer_config"],
)
def test_get_rejects_other_types(bad):
    with pytest.raises(TypeError, match="Received: sparsity="):
        schedules.get(bad)


def test_equality_and_hash_follow_the_config():
    a = schedules.PolynomialDecay(0.0, 0.9, 0, 100)
    assert a == schedules.PolynomialDecay(0.0, 0.9, 0, 100)
    assert a != schedules.PolynomialDecay(0.0, 0.9, 0, 101)
    assert a != schedules.Constant(0.9)
    assert len({a, schedules.PolynomialDecay(0.0, 0.9, 0, 100)}) == 1
    assert repr(schedules.Constant(0.5, 3)) == "Constant(sparsity=0.5, begin_step=3)"


@keras.saving.register_keras_serializable("tfprune_tests")
class Steps(schedules.PruningSchedule):
    """The user schedule of the `PruningSchedule` docstring."""

    def __init__(self, sparsities, every):
        self.sparsities, self.every = list(sparsities), every
        self.begin_step, self.end_step = 0, every * (len(sparsities) - 1)

    def __call__(self, step):
        return self.sparsities[min(step // self.every, len(self.sparsities) - 1)]

    def get_config(self):
        return {"sparsities": self.sparsities, "every": self.every}


def test_user_schedule_subclass():
    s = Steps([0.0, 0.5, 0.75], every=10)
    assert [s(0), s(9), s(10), s(20), s(99)] == [0.0, 0.0, 0.5, 0.75, 0.75]
    assert s.final_sparsity == 0.75
    assert schedules.get(s) is s
    restored = schedules.deserialize(schedules.serialize(s))
    assert isinstance(restored, Steps) and restored == s
