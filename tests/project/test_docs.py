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
