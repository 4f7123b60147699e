"""Bad input to the mask math: every error states the rule and ends `Received: ...`."""

import numpy as np
import pytest

from tfprune._masks.penalties import GroupLasso
from tfprune._masks.units import UnitGroup
from tfprune._masks.units import UnitSlice
from tfprune._masks.units import unit_totals


def test_a_unit_axis_that_does_not_split_into_the_gates():
    group = UnitGroup("lstm", (UnitSlice(0, axis=-1, gates=3),))
    message = r"shape \(2, 4\) does not split into 3 gates\. Received: gates=3$"
    with pytest.raises(ValueError, match=message):
        unit_totals(group, [np.ones((2, 4), "float32")])


def test_tensors_of_a_group_that_disagree_on_the_units():
    group = UnitGroup("dense", (UnitSlice(0), UnitSlice(1)))
    message = r"'dense' disagree on the number of units\. Received: group=UnitGroup\(name='dense'"
    with pytest.raises(ValueError, match=message):
        unit_totals(group, [np.ones((2, 3), "float32"), np.ones((2, 4), "float32")])


@pytest.mark.parametrize("axis", ["last", 1.0, True, None])
def test_group_lasso_axis_must_be_an_integer(axis):
    with pytest.raises(TypeError, match=rf"`axis` must be an integer\. Received: axis={axis!r}$"):
        GroupLasso(1.0, axis=axis)
