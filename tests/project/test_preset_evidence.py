"""The presets follow the measurements, and docs/strategies.md quotes them.

A preset must be the method that measured best for its model family on the
benchmark tasks (docs/benchmarks.json, `python -m benchmarks`), or within
the spread of the seeds of the best: the gap between the two means is at
most the larger of their standard deviations over the seeds. The unit
presets' allocation is backed by docs/unit_allocation.json
(`python -m benchmarks.unit_allocation`).
"""

import json
import os
import statistics

import keras
import pytest

from benchmarks import _tfprune_side
from benchmarks import unit_allocation
from tfprune import strategies
from tools import strategy_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _json(name):
    with open(os.path.join(ROOT, "docs", name)) as f:
        return json.load(f)


def _seeds(quality, task, target) -> dict:
    """`{method: [metric per seed]}` of tfprune's pruned runs."""
    out = {}
    for r in quality["records"]:
        if (r["framework"], r["task"]) == ("tfprune", task) and r["method"] != "dense" \
                and abs(r["target"] - target) < 1e-9:
            out.setdefault(r["method"], []).append(r["metric"])
    return out


def _best_or_close(values: dict, chosen: str, higher: bool) -> tuple:
    """`(best method, True if `chosen` is it or within the seeds' spread)`."""
    mean = {m: statistics.fmean(v) for m, v in values.items()}
    best = (max if higher else min)(mean, key=mean.get)
    gap = abs(mean[best] - mean[chosen])
    spread = max(statistics.pstdev(values[best]), statistics.pstdev(values[chosen]))
    return best, gap <= spread


def test_the_tables_are_rendered_from_the_saved_results():
    with open(os.path.join(ROOT, "docs", "strategies.md")) as f:
        doc = f.read()
    for marker, block in strategy_tables.render().items():
        assert block in doc, f"{marker} is stale: run `python tools/strategy_tables.py`"


@pytest.mark.parametrize("preset", sorted(strategy_tables.PRESETS))
def test_each_preset_is_the_best_measured_on_its_tasks(preset):
    quality = _json("benchmarks.json")["quality"]
    method, tasks = strategy_tables.PRESETS[preset]
    assert quality["sparsities"] == [0.5, 0.8, 0.9, 0.95]  # the documented columns
    for task in tasks:
        higher = quality["tasks"][task]["metric"] == "accuracy"
        for target in quality["sparsities"]:
            values = _seeds(quality, task, target)
            assert len(values[method]) == len(quality["seeds"]) == 3
            best, close = _best_or_close(values, method, higher)
            assert close, f"{preset} ({method}) on {task} at {target}: {best} is better"


@pytest.mark.parametrize("task, targets", [
    ("housing", [0.5, 0.8, 0.9, 0.95]),
    ("pm25", [0.8, 0.9, 0.95]),
    ("digits", [0.95]),
])
def test_global_magnitude_is_best_where_the_doc_says_so(task, targets):
    quality = _json("benchmarks.json")["quality"]
    higher = quality["tasks"][task]["metric"] == "accuracy"
    for target in targets:
        best, _ = _best_or_close(_seeds(quality, task, target), "global_magnitude", higher)
        assert best == "global_magnitude", (task, target)


def test_the_presets_are_the_measured_methods():
    factories = _tfprune_side._strategy_factories()
    measured = {name: factory() for name, (_, factory, _) in factories.items()}
    for preset, (method, _) in strategy_tables.PRESETS.items():
        assert strategies.get(preset) == measured[method], preset
    mlp = keras.Sequential([keras.Input((16,)), keras.layers.Dense(128),
                            keras.layers.Dense(64), keras.layers.Dense(1)])
    lstm = keras.Sequential([keras.Input((24, 8)), keras.layers.LSTM(32), keras.layers.Dense(1)])
    for model in (mlp, lstm):
        assert strategies.get("auto").resolve(model) == measured["global_magnitude"]
        regression = strategies.get("regression").resolve(model)
        assert regression.protect_inputs and regression.protect_outputs
        assert strategies.Strategy.from_config(
            {**regression.get_config(), "protect_inputs": False, "protect_outputs": False}
        ) == measured["global_magnitude"]
    # The reach of "regression" that the doc quotes for the housing MLP.
    plan = strategies.get("regression").plan(mlp)
    sizes = {c.name: c.n_params for c in plan.candidates()}
    assert sum(sizes[name] for name in plan.protected) == 2112 and sum(sizes.values()) == 10304
    # The unit presets allocate as the unit allocation benchmark's preset row.
    for model in (mlp, lstm):  # "units" is `auto(units=True)`
        assert measured["units"].resolve(model) == strategies.dense(units=True) \
            == strategies.recurrent(units=True)
    assert strategies.dense(units=True).allocation == \
        unit_allocation.ALLOCATIONS[strategy_tables.UNITS_PRESET]()


def test_uniform_is_the_best_unit_allocation_measured():
    units = _json("unit_allocation.json")
    # The saved file is the output of the script as it is.
    assert units["allocations"] == list(unit_allocation.ALLOCATIONS)
    assert units["sparsities"] == list(unit_allocation.SPARSITIES)
    assert units["recipe"] == unit_allocation.RECIPE
    for target in units["sparsities"]:
        values = {}
        for r in units["records"]:
            if r["sparsity"] == target:
                values.setdefault(r["allocation"], []).append(r["accuracy"])
        best, close = _best_or_close(values, strategy_tables.UNITS_PRESET, higher=True)
        assert best == strategy_tables.UNITS_PRESET and close, target
