"""Every keras.applications family, end to end (see life_cycle.py).

Each model is the family's smallest variant at its smallest allowed input
size, with random weights (`weights=None`) and a small head. Tracing a
training step of a real architecture takes from 10 s to minutes on two
busy cores, so all but the fastest family are marked slow:
`make test-models` runs them all.
"""

import keras
import numpy as np
import pytest

CLASSES = 4

# name -> (constructor, smallest input size, extra constructor arguments)
APPLICATIONS = {
    "ConvNeXtTiny": (keras.applications.ConvNeXtTiny, 32, {}),
    "DenseNet121": (keras.applications.DenseNet121, 32, {}),
    "EfficientNetB0": (keras.applications.EfficientNetB0, 32, {}),
    "EfficientNetV2B0": (keras.applications.EfficientNetV2B0, 32, {}),
    "InceptionV3": (keras.applications.InceptionV3, 75, {}),
    "InceptionResNetV2": (keras.applications.InceptionResNetV2, 75, {}),
    "MobileNet": (keras.applications.MobileNet, 32, {"alpha": 0.25}),
    "MobileNetV2": (keras.applications.MobileNetV2, 32, {"alpha": 0.35}),
    "MobileNetV3Small": (keras.applications.MobileNetV3Small, 32, {"alpha": 0.75}),
    "NASNetMobile": (keras.applications.NASNetMobile, 32, {}),
    "ResNet50": (keras.applications.ResNet50, 32, {}),
    "ResNet50V2": (keras.applications.ResNet50V2, 32, {}),
    "VGG16": (keras.applications.VGG16, 32, {}),
    "Xception": (keras.applications.Xception, 71, {}),
}
#: Fast enough for the default run (about 20 s for the whole life cycle).
FAST = {"MobileNet"}


def _build(name):
    constructor, size, kwargs = APPLICATIONS[name]
    model = constructor(weights=None, input_shape=(size, size, 3), classes=CLASSES, **kwargs)
    return model, size


@pytest.mark.parametrize(
    "name",
    [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in APPLICATIONS],
)
def test_application_life_cycle(name, life_cycle, rng):
    model, size = _build(name)
    x = rng.random((life_cycle.samples, size, size, 3)).astype("float32")
    life_cycle.run(model, x)
