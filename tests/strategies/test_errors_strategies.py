"""Bad arguments to granularities, allocations and strategies: every error
names the argument and ends `Received: name=value`."""

import re

import numpy as np
import pytest

from tfprune import criteria
from tfprune import granularity as gr
from tfprune import strategies
from tfprune import SensitivityTable
from tfprune.strategies._allocation import Candidate
from tfprune.strategies._allocation import PerLayer
from tfprune.strategies._allocation import Uniform
from tfprune.strategies._sensitivity import SensitivityAllocation

TABLE = SensitivityTable("mae", "min", 1.0, [0.5], {"dense": {"n_params": 10, "values": [1.1]}})


def _message(rule, name, value):
    """The whole message: `rule`, then `Received: name=value`."""
    return "^" + re.escape(f"{rule} Received: {name}={value!r}") + "$"


@pytest.mark.parametrize("reduction", ["min", None])
def test_block_reduction_is_mean_sum_or_max(reduction):
    message = _message("`reduction` must be 'mean', 'sum' or 'max'.", "reduction", reduction)
    with pytest.raises(ValueError, match=message):
        gr.Block((1, 4), reduction=reduction)


def test_block_max_scores_a_block_by_its_largest_member():
    scores = np.array([[0.0], [0.9], [0.5], [0.6]])  # means 0.45 < 0.55, maxima 0.9 > 0.6
    assert np.asarray(gr.Block((2, 1)).mask(scores, 0.5)).ravel().tolist() == [0, 0, 1, 1]
    assert np.asarray(gr.Block((2, 1), reduction="max").mask(scores, 0.5)).ravel().tolist() == \
        [1, 1, 0, 0]


@pytest.mark.parametrize("axis, error", [(1.5, TypeError), (True, TypeError), (None, TypeError),
                                         ("inputs", ValueError)])
def test_nm_axis_is_named_or_an_integer(axis, error):
    message = _message("`axis` must be 'input', 'output' or an integer.", "axis", axis)
    with pytest.raises(error, match=message):
        gr.NM(2, 4, axis=axis)


@pytest.mark.parametrize("n, m, error", [(4, 4, ValueError), (0, 4, ValueError),
                                         (2.0, 4, TypeError), (2, "4", TypeError)])
def test_nm_n_and_m_are_integers_with_n_below_m(n, m, error):
    with pytest.raises(error, match=re.escape(f"0 < n < m. Received: n={n!r}, m={m!r}") + "$"):
        gr.NM(n, m)


@pytest.mark.parametrize(
    "name, value, bound",
    [
        ("min_sparsity", 1.0, "[0, 1)"),
        ("min_sparsity", -0.1, "[0, 1)"),
        ("min_sparsity", True, "[0, 1)"),
        ("max_sparsity", 1.5, "[0, 1]"),
        ("max_sparsity", "0.5", "[0, 1]"),
    ],
)
def test_allocation_bounds_are_fractions(name, value, bound):
    with pytest.raises(ValueError, match=_message(f"`{name}` must be a number in {bound}.", name, value)):
        Uniform(**{name: value})


def test_candidate_names_must_be_unique():
    message = _message("Candidate names must be unique.", "names", ["a", "a"])
    with pytest.raises(ValueError, match=message):
        Uniform().allocate([Candidate("a", 3), Candidate("a", 4)], 0.5)


@pytest.mark.parametrize("sparsities", [["dense"], {1: 0.5}, None])
def test_per_layer_needs_a_dict_of_names(sparsities):
    rule = "`sparsities` must be a dict mapping layer names or patterns to sparsities."
    with pytest.raises(TypeError, match=_message(rule, "sparsities", sparsities)):
        PerLayer(sparsities)


def test_sensitivity_allocation_needs_a_table():
    rule = "`table` must be a SensitivityTable (from `tfprune.sensitivity`) or its `to_dict()`."
    with pytest.raises(TypeError, match=_message(rule, "table", "table.json")):
        SensitivityAllocation("table.json")


@pytest.mark.parametrize("step, error", [(0, ValueError), (0.6, ValueError), (-0.1, ValueError),
                                         (True, TypeError), ("0.1", TypeError)])
def test_sensitivity_allocation_step(step, error):
    with pytest.raises(error, match=_message("`step` must be a number in (0, 0.5].", "step", step)):
        SensitivityAllocation(TABLE, step=step)


@pytest.mark.parametrize("strength, error", [(-1, ValueError), (float("nan"), ValueError),
                                             ("0.1", TypeError), (None, TypeError)])
@pytest.mark.parametrize("penalty", ["L1Regularizer", "GroupLasso"])
def test_penalty_strength_is_a_number_at_least_zero(penalty, strength, error):
    message = _message("`strength` must be a number >= 0.", "strength", strength)
    with pytest.raises(error, match=message):
        getattr(criteria, penalty)(strength)


@pytest.mark.parametrize("regularizer", [3, "l1"])
def test_strategy_regularizer_must_be_callable(regularizer):
    message = _message("`regularizer` must be callable.", "regularizer", regularizer)
    with pytest.raises(TypeError, match=message):
        strategies.Strategy(regularizer=regularizer)
