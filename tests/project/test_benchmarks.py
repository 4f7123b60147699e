"""Smoke tests of the benchmark harness (`python -m benchmarks`).

They need neither tfmot nor tf_keras: the report writer works on a results
dict, and the tfprune side runs on tiny data and models.
"""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from benchmarks import __main__ as cli
from benchmarks import _models
from benchmarks import _report
from benchmarks import _tfprune_side as side
from benchmarks import update_vs_revision

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _tiny_housing():
    """The housing recipe on 64 training rows: 1 epoch = 2 steps."""
    cfg = _models.task_configs(quick=True, names=["housing"])["housing"]
    cfg = dataclasses.replace(cfg, dense_epochs=1, finetune_epochs=2, update_every=1, end_step=2,
                              max_train=64, batch_size=32)
    return cfg, _models.load_data(cfg)


def _results():
    """A results dict with every section, as `python -m benchmarks` builds it."""
    records = []
    for seed, (dense, tfmot, mine) in enumerate([(70000, 80000, 78000), (72000, 84000, 80000)]):
        records += [
            {"task": "housing", "seed": seed, "framework": "tfprune", "method": "dense",
             "target": 0.0, "metric": dense, "sparsity": 0.0, "seconds": 1.0},
            {"task": "housing", "seed": seed, "framework": "tfmot", "method": "magnitude",
             "target": 0.9, "metric": tfmot, "sparsity": 0.9, "seconds": 1.0},
            {"task": "housing", "seed": seed, "framework": "tfprune", "method": "magnitude",
             "target": 0.9, "metric": mine, "sparsity": 0.9, "seconds": 1.0},
        ]
    tasks = {"housing": _models.task_configs(True, ["housing"])["housing"].to_dict()}
    return {
        "meta": {"date": "2025-01-01T00:00:00", "quick": True, "seconds": 60.0,
                 "machine": _report.machine_info(), "tfmot": "not run (test)",
                 "versions": {"tfprune_side": {"tensorflow": "2.21.0"}, "tfmot_side": {}},
                 "commands": ["python -m benchmarks --quick"]},
        "quality": {"tasks": tasks, "sparsities": [0.9], "seeds": [0, 1], "records": records,
                    "skipped": {"taylor": "needs gradients"}, "methods": {"magnitude": "per layer"}},
        "cost": {"records": [{"task": "housing", "framework": "tfprune", "every": 50,
                              "steps_per_epoch": 113,
                              "dense_epoch_s": [0.10, 0.12], "pruned_epoch_s": [0.11, 0.13],
                              "ratio": 1.0869}]},
        "update": {"records": [{"size": 10**6, "n_weights": 10**6, "framework": "tfprune",
                                "mode": "prune_to", "times": [0.05], "median_s": 0.05,
                                "sparsity": 0.9}]},
        "artifacts": {"metric": "test accuracy", "notes": {"sparse": "90%"}, "files": [
            {"framework": "tfprune", "variant": "sparse", "format": "tflite", "quantize": None,
             "bytes": 30720, "gzip_bytes": 20480, "sparse_tensors": 3,
             "latency_s": {"AUTO": 2e-6, "BUILTIN_WITHOUT_DEFAULT_DELEGATES": None}}],
            "records": [{"framework": "tfprune", "method": "sparse", "metric": 0.9,
                         "sparsity": 0.9}]},
    }


# ---------------------------------------------------------------- report
def test_aggregate_mean_std_min_max_over_seeds():
    rows = _report.aggregate(_results()["quality"]["records"])
    row = next(r for r in rows if r["framework"] == "tfmot")
    assert (row["n"], row["mean"], row["min"], row["max"]) == (2, 82000.0, 80000.0, 84000.0)
    assert row["std"] == pytest.approx(2000.0)


def test_write_produces_markdown_json_and_plots(tmp_path):
    out = tmp_path / "docs" / "BENCHMARKS.md"
    results = _results()
    text = _report.write(results, str(out), str(tmp_path / "b.json"), str(tmp_path / "docs/img"))
    assert out.read_text() == text
    assert "| tfmot magnitude |  | 82,000 ± 2,000 [80,000 – 84,000] |" in text
    assert "| housing | 50 | tfprune | 113 | 0.110 | 0.120 | **1.09** | <= 1.10 (met) | 2 |" in text
    assert "| 1,000,000 | 50.0 |" in text
    assert "| tfprune | sparse | tflite | float32 | 30.0 | 20.0 | 3 | 2.0 | n/a |" in text
    assert "`taylor`: needs gradients" in text
    assert "![1. Quality after pruning](img/bench_quality.png)" in text
    assert json.loads((tmp_path / "b.json").read_text()) == json.loads(json.dumps(results))
    for name in ("bench_quality.png", "bench_artifacts.png"):
        assert (tmp_path / "docs/img" / name).read_bytes()[:8] == PNG_SIGNATURE


def test_report_leaves_out_sections_not_measured(tmp_path):
    results = {k: v for k, v in _results().items() if k in ("meta", "update")}
    text = _report.write(results, str(tmp_path / "B.md"), None, None)
    assert "## 3. Mask update cost" in text
    assert "## 1. Quality" not in text and "## 4. Artifacts" not in text


# ------------------------------------------------------------ saved results
def test_the_benchmarks_page_is_rendered_from_its_saved_results():
    """docs/BENCHMARKS.md is what `python -m benchmarks` writes from
    docs/benchmarks.json (and the structured block of docs/structured.json):
    a figure edited in one and not the other fails here."""
    results = json.loads((DOCS / "benchmarks.json").read_text())
    images = {key: f"img/bench_{key}.png" for key in ("quality", "artifacts")
              if key in results and not results[key].get("error")}
    page = (DOCS / "BENCHMARKS.md").read_text()
    assert page == _report.markdown(results, images), (
        "docs/BENCHMARKS.md and docs/benchmarks.json disagree: rerun `python -m benchmarks`")
    for image in images.values():
        assert (DOCS / image).read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("name", ["update_vs_revision.json", "update_vs_revision_100m.json"])
def test_the_saved_revision_tables_are_rendered_from_their_records(name):
    result = json.loads((DOCS / name).read_text())
    assert result["table"] == update_vs_revision.table(result)
    assert {r["tree"] for r in result["records"]} == {"old", "new"}


# ------------------------------------------------------------ shared parts
def test_task_config_needs_end_step_multiple_of_update_every():
    cfg = _models.task_configs()["housing"]
    with pytest.raises(ValueError, match="multiple of `update_every`.*Received: end_step=55"):
        dataclasses.replace(cfg, end_step=55)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="Received: task='mnist'"):
        _models.task_configs(names=["mnist"])


def test_weights_round_trip_and_kernel_sparsity(tmp_path):
    arrays = [np.array([[0.0, 1.0], [0.0, 2.0]], "float32"), np.zeros(2, "float32")]
    _models.save_weights(str(tmp_path / "w.npz"), arrays)
    loaded = _models.load_weights(str(tmp_path / "w.npz"))
    assert [a.tolist() for a in loaded] == [a.tolist() for a in arrays]
    assert _models.kernel_sparsity(loaded) == 0.5  # the bias (rank 1) is not counted


def test_cli_validates_choices_and_skips_100m():
    with pytest.raises(SystemExit, match="--only must be a comma-separated subset"):
        cli.parse_args(["--only", "quality,speed"])
    args = cli.parse_args(["--skip-100m", "--only", "update"])
    assert args.update_sizes == (10_000, 1_000_000, 10_000_000)
    assert args.seeds == (0, 1, 2) and args.sparsities == (0.5, 0.8, 0.9, 0.95)


def test_without_tfmot_the_tfprune_side_runs_alone(tmp_path):
    worker = cli.Worker(None, str(tmp_path), "not run (--no-tfmot)")
    result, error = cli._tfmot(worker, {"kind": "versions"}, "test")
    assert result is None and error == "tfmot side: not run (--no-tfmot)"


# ------------------------------------------------------------ tfprune side
def test_methods_always_include_magnitude_and_explain_skips():
    methods, skipped = side.available_methods(("magnitude", "nonsense"))
    assert [m.name for m in methods] == ["magnitude"]
    assert "nonsense" in skipped


@pytest.mark.parametrize("name", ["magnitude", "global_magnitude"])
def test_finetune_reaches_the_target_sparsity(name):
    methods, skipped = side.available_methods((name,))
    if not methods:
        pytest.skip(skipped[name])
    cfg, data = _tiny_housing()
    weights, dense = side.train_dense(cfg, data, seed=0)
    final = side.finetune(cfg, data, weights, methods[0], 0.8, seed=0)
    assert dense["method"] == "dense" and np.isfinite(dense["metric"])
    assert _models.kernel_sparsity(final.get_weights()) == pytest.approx(0.8, abs=1e-3)
    assert "PruningWrapper" not in [type(layer).__name__ for layer in final.layers]


def test_update_benchmark_prunes_every_mask_exactly():
    records = side.update([4 * 20 * 20], repeats=1, sparsity=0.75, global_max=0)
    # global: over the max
    assert {r["mode"] for r in records} == {"callback", "2:4", "units", "unchanged"}
    for r in records:
        assert r["n_weights"] == 1600 and r["median_s"] > 0
        assert r["sparsity"] == r["target"] == (0.5 if r["mode"] == "2:4" else 0.75)


def test_cost_gives_a_ratio_from_timed_epochs():
    cfg, _ = _tiny_housing()
    rec, constant = side.cost({"housing": cfg}, 0.5, epochs=2, rounds=1,
                              frequencies=(1, "constant"))
    assert (rec["every"], constant["every"]) == (1, "constant")
    assert rec["steps_per_epoch"] == 2
    assert len(rec["dense_epoch_s"]) == len(rec["pruned_epoch_s"]) == 2
    expected = np.median(rec["pruned_epoch_s"]) / np.median(rec["dense_epoch_s"])
    assert rec["ratio"] == pytest.approx(expected)


def test_repeated_cost_decides_only_where_the_ranges_do_not_overlap():
    from benchmarks import cost
    from tools import cost_tables

    def record(framework, every, ratio, repeat):
        return {"task": "housing", "framework": framework, "every": every, "ratio": ratio,
                "repeat": repeat, "steps_per_epoch": 113,
                "dense_epoch_s": [0.1, 0.1], "pruned_epoch_s": [0.1 * ratio] * 2}

    records = []
    for repeat, (a, b, c, d) in enumerate([(1.0, 1.2, 1.1, 1.15), (1.02, 1.3, 1.3, 1.2),
                                           (1.01, 1.25, 1.2, 1.0)]):
        records += [record("tfprune", 1, a, repeat), record("tfmot", 1, b, repeat),
                    record("tfprune", "constant", c, repeat), record("tfmot", "constant", d,
                                                                     repeat)]
    summary = {(r["framework"], r["every"]): r["ratio"] for r in cost.aggregate(records)}
    assert summary[("tfprune", 1)] == {"median": 1.01, "min": 1.0, "max": 1.02, "n": 3}
    result = {"tasks": {"housing": "MLP"}, "settings": [1, "constant"],
              "summary": cost.aggregate(records)}
    text = cost_tables.table(result)
    assert "| MLP | every step | 1.01 [1.00-1.02] | 1.25 [1.20-1.30] | tfprune lower |" in text
    assert "| MLP | constant masks | 1.20 [1.10-1.30] | 1.15 [1.00-1.20] | undecided" in text
    one = {"tasks": {"housing": "MLP"}, "settings": [1],
           "summary": cost.aggregate([r for r in records if r["repeat"] == 0])}
    assert "fewer than 3 repeats" in cost_tables.table(one)
