"""The CNN tables of docs/shrink.md and docs/BENCHMARKS.md come from
docs/structured.json; the MAC counter."""

import json
import os

import keras

from benchmarks.structured import count_macs
from tools import structured_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
L = keras.layers


def test_real_cnn_table_comes_from_the_saved_results():
    with open(os.path.join(ROOT, "docs", "structured.json")) as f:
        results = json.load(f)
    for name in ("shrink.md", "BENCHMARKS.md"):
        with open(os.path.join(ROOT, "docs", name)) as f:
            page = f.read()
        assert structured_tables.render(results) in page, \
            f"run `python tools/structured_tables.py` to rewrite docs/{name}"
    assert [r["model"] for r in results["records"]] == ["ResNet50", "MobileNetV2",
                                                         "EfficientNetB0"]
    for r in results["records"]:
        assert r["params"][1] < r["params"][0] and r["macs"][1] < r["macs"][0]
        assert r["max_abs_diff"] <= 1e-5 * max(1.0, r["max_abs_output"])


def test_macs_are_counted_from_the_layer_shapes():
    x = keras.Input((8, 8, 3))
    y = L.Conv2D(4, 3, padding="same")(x)  # 64 positions x 4 filters x 9 x 3
    y = L.DepthwiseConv2D(3)(y)  # 36 positions x 4 channels x 9
    y = L.Conv2D(6, 1, groups=2)(y)  # 36 x 6 x 1 x 2
    y = L.Dense(5)(L.Flatten()(y))  # 216 x 5
    inner = keras.Sequential([keras.Input((5,)), L.Dense(2)])  # 5 x 2
    model = keras.Model(x, inner(y))
    assert count_macs(model) == 64 * 4 * 9 * 3 + 36 * 4 * 9 + 36 * 6 * 2 + 216 * 5 + 10
