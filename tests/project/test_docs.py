"""The README and the API reference stay true to the code."""

import json
import os
import re

import numpy as np

from tools import gen_api_docs
from tools import readme_tables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_api_reference_is_current():
    with open(os.path.join(ROOT, "docs", "api.md")) as f:
        assert f.read() == gen_api_docs.render(), "run `make docs` to regenerate docs/api.md"


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    quickstart = next(b for b in blocks if "tfprune.prune(" in b and "PruningCallback" in b)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(quickstart, "README.md", "exec"), namespace)
    final = namespace["final"]
    report = namespace["tfprune"].sparsity_report(final)
    # The quickstart's schedule ends at 90%; the saved file holds the same model.
    assert abs(report.sparsity - 0.9) < 0.01
    loaded = namespace["keras"].saving.load_model("pruned.keras")
    x = namespace["x"][:16]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), final.predict(x, verbose=0), atol=1e-6)


def test_readme_benchmark_figures_come_from_the_saved_results():
    with open(os.path.join(ROOT, "docs", "benchmarks.json")) as f:
        block = readme_tables.render(json.load(f))
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert block in readme, "run `python tools/readme_tables.py` to rewrite the README tables"


def test_training_cost_tables_come_from_the_saved_repeats():
    """README and docs/BENCHMARKS.md print the medians and ranges that
    `python -m benchmarks.cost` saved, and the saved summary is the
    aggregate of its own records."""
    from benchmarks import cost
    from tools import cost_tables

    with open(os.path.join(ROOT, "docs", "cost.json")) as f:
        result = json.load(f)
    assert cost.aggregate(result["records"]) == result["summary"]
    assert result["table"] == cost_tables.table(result)
    assert result["repeats"] >= 5 and not result["quick"]
    # docs/pruning.md describes the saved run: one decided difference, and
    # medians above 1.05 for both tools with constant masks on the MLP.
    rows = {(r["task"], r["every"], r["framework"]): r["ratio"] for r in result["summary"]}
    decided = {(task, every) for task, every, tool in rows if tool == "tfprune"
               and (rows[task, every, "tfprune"]["max"] < rows[task, every, "tfmot"]["min"]
                    or rows[task, every, "tfmot"]["max"] < rows[task, every, "tfprune"]["min"])}
    assert decided == {("housing", 10)}
    assert rows["housing", 10, "tfprune"]["max"] < rows["housing", 10, "tfmot"]["min"]
    assert min(rows["housing", "constant", t]["median"] for t in ("tfprune", "tfmot")) > 1.05
    block = cost_tables.render(result)
    for page in ("README.md", os.path.join("docs", "BENCHMARKS.md")):
        with open(os.path.join(ROOT, page)) as f:
            assert block in f.read(), f"run `python tools/cost_tables.py` to rewrite {page}"
