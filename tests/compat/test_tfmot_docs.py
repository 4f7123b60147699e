"""The side-by-side tables of docs/migration.md come from their saved
results, and what the page says of them holds there."""

import json
import os
import statistics

import pytest

from tools import migration_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name):
    with open(os.path.join(ROOT, "docs", name)) as f:
        return json.load(f)


def _page():
    with open(os.path.join(ROOT, "docs", "migration.md")) as f:
        return f.read()


def test_the_tfmot_table_is_rendered_from_its_results():
    document = _load("tfmot_compat.json")
    assert migration_tables.render_tfmot(document) in _page(), \
        "run `python tools/migration_tables.py`"
    assert len(document["seeds"]) >= 5


def test_the_compat_module_reaches_tfmots_sparsity_on_every_tensor():
    document = _load("tfmot_compat.json")
    runs = {(r["seed"], r["side"]): r["results"] for r in document["runs"]}
    for seed in document["seeds"]:
        tfmot, compat = runs[(seed, "tfmot")], runs[(seed, "compat")]
        assert set(tfmot) == set(compat) == {"cnn", "two_of_four", "lstm"}
        for program in tfmot:
            assert tfmot[program]["zeros"] == pytest.approx(compat[program]["zeros"], abs=1e-3), \
                (seed, program)


def test_what_the_page_says_of_the_lstm():
    runs = _load("tfmot_compat.json")["runs"]
    gates = {side: [r["results"]["lstm"]["gates"]["lstm/recurrent_kernel"] for r in runs
                    if r["side"] == side] for side in ("tfmot", "compat")}
    for per_gate in gates["tfmot"]:  # one threshold: forget and cell gates pruned hardest
        assert min(per_gate[1], per_gate[2]) > 0.8 > 0.7 > max(per_gate[0], per_gate[3])
    assert all(g == [0.75] * 4 for g in gates["compat"])
    accuracy = {(r["seed"], r["side"]): r["results"]["lstm"]["accuracy"] for r in runs}
    seeds = {seed for seed, _ in accuracy}
    assert all(accuracy[(s, "compat")] > accuracy[(s, "tfmot")] for s in seeds)
    mean = {side: statistics.mean(accuracy[(s, side)] for s in seeds) for side in ("tfmot", "compat")}
    assert round(mean["compat"], 2) == 0.79 and round(mean["tfmot"], 2) == 0.59
    for program in ("cnn", "two_of_four"):  # within the seeds' spread
        values = {side: [r["results"][program]["accuracy"] for r in runs if r["side"] == side]
                  for side in ("tfmot", "compat")}
        assert abs(statistics.mean(values["tfmot"]) - statistics.mean(values["compat"])) < \
            max(max(v) - min(v) for v in values.values())


def test_the_xnnpack_table_is_rendered_from_its_results():
    assert migration_tables.render_xnnpack(_load("xnnpack_sparse.json")) in _page(), \
        "run `python tools/migration_tables.py`"


def test_what_the_page_says_of_the_xnnpack_results():
    document = _load("xnnpack_sparse.json")
    records = document["records"]

    def ms(resolver, threads, sparsity, sparse):
        (r,) = [r for r in records if (r["resolver"], r["threads"], r["sparsity"],
                                       r["sparse_storage"]) == (resolver, threads, sparsity, sparse)]
        return r["ms"]

    for resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
        dense = ms(resolver, 1, 0.0, False)
        for sparsity in (0.75, 0.9):
            for sparse in (False, True):
                # Within 10% of the dense model: no speed-up from sparsity.
                assert abs(ms(resolver, 1, sparsity, sparse) / dense - 1) < 0.10
    assert 2.5 < ms("BUILTIN_WITHOUT_DEFAULT_DELEGATES", 1, 0.0, False) / ms("AUTO", 1, 0.0, False)
    sizes = {(r["sparsity"], r["sparse_storage"]): r["bytes"] for r in records}
    assert round(sizes[(0.0, False)] / 1024) == 3150 and round(sizes[(0.9, True)] / 1024) == 555
