"""The `life_cycle` fixture of the model matrices (see life_cycle.py)."""

import pytest

from tests.models.life_cycle import LifeCycle


@pytest.fixture
def life_cycle(check_pruned, tmp_path, record_property):
    return LifeCycle(check_pruned, tmp_path, record_property)
