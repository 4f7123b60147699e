"""Fixtures shared by the export tests."""

import keras
import pytest

from tests.export_models import MODELS
from tests.export_models import pruned


@pytest.fixture(scope="session")
def export_models():
    """`{kind: pruned model}` of `tests/export_models.py`, made once for the
    TFLite and the SavedModel tests (pruning all six takes about 10 s)."""
    keras.utils.set_random_seed(1)
    return {kind: pruned(kind) for kind in MODELS}
