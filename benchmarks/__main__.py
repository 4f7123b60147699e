"""`python -m benchmarks`: tfprune (Keras 3) against tfmot (tf_keras).

```
python -m benchmarks [--quick] [--only quality,cost,update,artifacts]
                     [--out docs/BENCHMARKS.md] [--json docs/benchmarks.json]
```

This process is the tfprune side (Keras 3). The tfmot side runs in another
interpreter with `TF_USE_LEGACY_KERAS=1` (`benchmarks/_tfmot_worker.py`),
found as: `--tfmot-python`, else `$TFPRUNE_TFMOT_PYTHON`, else
`.venv-bench/bin/python` in the repository, else this interpreter if it can
import tfmot in a subprocess. Without one, the tfprune side runs alone and
the report says so. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks import _models  # noqa: E402
from benchmarks import _report  # noqa: E402
from benchmarks._models import log  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASUREMENTS = ("quality", "cost", "update", "artifacts")
COST_TASKS = ("housing", "pm25")
ARTIFACT_TASK = "digits"


# -------------------------------------------------------------- tfmot side
class Worker:
    """Runs jobs in the tfmot interpreter; `python` is None if there is none."""

    def __init__(self, python, work_dir, note):
        self.python, self.work_dir, self.note = python, work_dir, note
        self.versions = {}
        self._count = 0

    def command(self, job_path="JOB.json", result_path="RESULT.json") -> list:
        return [self.python or "PYTHON", "-m", "benchmarks._tfmot_worker", job_path, result_path]

    def run(self, job: dict):
        """The job's result, or raises RuntimeError with the worker's stderr tail."""
        self._count += 1
        job_path = os.path.join(self.work_dir, f"job_{self._count}.json")
        result_path = os.path.join(self.work_dir, f"result_{self._count}.json")
        with open(job_path, "w") as f:
            json.dump(job, f)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
        proc = subprocess.run(self.command(job_path, result_path), cwd=REPO, env=env,
                              stdout=None, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"tfmot worker failed ({job['kind']}, exit {proc.returncode}): "
                               + proc.stderr.strip()[-1500:])
        with open(result_path) as f:
            return json.load(f)


def find_worker(explicit, work_dir) -> Worker:
    """The first interpreter that runs the worker's "versions" job."""
    candidates = []
    for source, python in (("--tfmot-python", explicit),
                           ("$TFPRUNE_TFMOT_PYTHON", os.environ.get("TFPRUNE_TFMOT_PYTHON")),
                           (".venv-bench", os.path.join(REPO, ".venv-bench", "bin", "python")),
                           ("this interpreter", sys.executable)):
        if python and (source == "this interpreter" or os.path.exists(python)):
            candidates.append((source, python))
    failures = []
    for source, python in candidates:
        worker = Worker(python, work_dir, f"`{python}` ({source})")
        try:
            worker.versions = worker.run({"kind": "versions"})
            return worker
        except (RuntimeError, OSError) as e:
            failures.append(f"{source}: {str(e).splitlines()[-1][:200]}")
    note = "unavailable: no interpreter with tensorflow-model-optimization and tf_keras found"
    return Worker(None, work_dir, note + (" (" + "; ".join(failures) + ")" if failures else ""))


def _tfmot(worker, job, label):
    """Runs a job on the tfmot side; `(result, error)`."""
    if worker.python is None:
        return None, f"tfmot side: {worker.note}"
    log(f"[{label}] tfmot side ...")
    try:
        return worker.run(job), None
    except RuntimeError as e:
        log(f"[{label}] {e}")
        return None, str(e)


# ------------------------------------------------------------ measurements
def measure_quality(args, worker) -> dict:
    from benchmarks import _tfprune_side as side

    configs = _models.task_configs(args.quick, args.tasks)
    methods, skipped = side.available_methods(args.methods)
    records, runs = [], []
    for name, cfg in configs.items():
        data = _models.load_data(cfg)
        for seed in args.seeds:
            log(f"[quality] {name} seed {seed}: dense training, then {len(methods)} tfprune method(s)")
            weights, rec = side.train_dense(cfg, data, seed)
            records.append(rec)
            path = os.path.join(worker.work_dir, f"{name}_seed{seed}.npz")
            _models.save_weights(path, weights)
            runs.append({"task": name, "seed": seed, "weights": path})
            records += side.prune_runs(cfg, data, weights, seed, methods, args.sparsities)
    job = {"kind": "quality", "tasks": {n: c.to_dict() for n, c in configs.items()},
           "runs": runs, "sparsities": list(args.sparsities)}
    result, error = _tfmot(worker, job, "quality")
    records += result or []
    return {"about": QUALITY_ABOUT, "tasks": {n: c.to_dict() for n, c in configs.items()},
            "sparsities": list(args.sparsities), "seeds": list(args.seeds),
            "methods": {m.name: m.description for m in methods}, "skipped": skipped,
            "records": records, "error": error}


def measure_cost(args, worker) -> dict:
    from benchmarks import _tfprune_side as side

    configs = _models.task_configs(args.quick, [t for t in COST_TASKS if t in args.tasks])
    epochs, rounds = (2, 1) if args.quick else (4, 3)
    log(f"[cost] tfprune side: {list(configs)}, {rounds} round(s) of {epochs} timed epochs")
    frequencies = (5, "constant") if args.quick else side.FREQUENCIES
    records = side.cost(configs, 0.9, epochs, rounds, frequencies)
    job = {"kind": "cost", "tasks": {n: c.to_dict() for n, c in configs.items()},
           "sparsity": 0.9, "epochs": epochs, "rounds": rounds,
           "frequencies": [f for f in frequencies if f != "constant"]}
    result, error = _tfmot(worker, job, "cost")
    about = COST_ABOUT + (
        " Quick mode: epochs of a few steps with masks updated every 2-5 steps, so these ratios "
        "mostly measure the mask updates, not the training overhead." if args.quick else "")
    layers = None if args.quick else side.layer_cost(repeats=5)
    return {"about": about, "records": records + (result or []), "error": error,
            "layers": layers}


def measure_update(args, worker) -> dict:
    from benchmarks import _tfprune_side as side

    repeats = 3 if args.quick else 5
    log(f"[update] tfprune side: sizes {args.update_sizes}, median of "
        f"{[_models.update_repeats(n, repeats) for n in args.update_sizes]} calls")
    records = side.update(args.update_sizes, repeats, _models.UPDATE_SPARSITY,
                          global_max=args.global_max_size)
    job = {"kind": "update", "sizes": list(args.update_sizes), "repeats": repeats,
           "sparsity": _models.UPDATE_SPARSITY}
    result, error = _tfmot(worker, job, "update")
    return {"about": UPDATE_ABOUT, "records": records + (result or []), "error": error}


def measure_artifacts(args, worker) -> dict:
    from benchmarks import _artifacts
    from benchmarks import _tfprune_side as side

    cfg = _models.task_configs(args.quick, [ARTIFACT_TASK])[ARTIFACT_TASK]
    data = _models.load_data(cfg)
    out_dir = os.path.join(worker.work_dir, "artifacts")
    os.makedirs(out_dir, exist_ok=True)
    log(f"[artifacts] {cfg.title} at 90%: tfprune exports")
    weights, dense_rec = side.train_dense(cfg, data, 0)
    weights_path = os.path.join(worker.work_dir, "artifacts_dense.npz")
    _models.save_weights(weights_path, weights)
    methods, _ = side.available_methods(("magnitude", "units"))
    mine = _artifacts.export(cfg, data, weights, 0.9, 0, out_dir, methods)
    for entry in mine["files"] + mine["records"]:
        entry["framework"] = "tfprune"
    job = {"kind": "artifacts", "task": cfg.to_dict(), "weights": weights_path, "sparsity": 0.9,
           "seed": 0, "out_dir": out_dir}
    result, error = _tfmot(worker, job, "artifacts")
    files, records = mine["files"], mine["records"]
    if result:
        for entry in result["files"]:
            entry["framework"] = "tfmot"
        files += result["files"]
        records.append(dict(result["record"], method="sparse"))
    runs = 200 if args.quick else 2000
    log(f"[artifacts] LiteRT latency of {sum(f['format'] == 'tflite' for f in files)} files "
        f"(median of {runs}, 1 thread)")
    _artifacts.add_runtime_info(files, runs)
    return {"about": ARTIFACTS_ABOUT, "files": files, "records": records,
            "notes": mine["notes"], "metric": cfg.metric_label, "error": error,
            "export_modes": _export_modes(args, worker.work_dir)}


def _export_modes(args, work_dir) -> str | None:
    """The Markdown of `benchmarks/export_sizes.py` (every tfprune export
    mode at several sparsities), or None where that script is absent."""
    try:
        from benchmarks import export_sizes
    except ImportError:
        return None
    log("[artifacts] tfprune export modes (benchmarks/export_sizes.py)")
    path = os.path.join(work_dir, "export_sizes.md")
    try:
        export_sizes.main((["--quick"] if args.quick else []) + ["--out", path])
        with open(path) as f:
            return f.read()
    except Exception as e:  # another module: report its failure, keep the rest
        return f"`benchmarks/export_sizes.py` failed: {type(e).__name__}: {e}"


QUALITY_ABOUT = (
    "Each seed trains the dense model once in Keras 3; both frameworks then prune and fine-tune "
    "from those same weights (copied through a .npz), with the same data split, batch size, "
    "Adam learning rate, epochs and cubic PolynomialDecay from 0 at step 0 to the target at "
    "`end_step` (tfprune `update_every` = tfmot `frequency`). The metric is measured on the "
    "test split after stripping. Recipes per task are in `docs/benchmarks.json` (`quality.tasks`).")
COST_ABOUT = (
    "Wall time per epoch of `fit` on the pruned model divided by the same framework's `fit` on "
    "the unpruned model, same data and batch size, measured in one process: one warm-up epoch per "
    "fit is dropped, the dense and pruned fits alternate, the median epoch is used. The sparsity "
    "schedule (PolynomialDecay to 90%) is still running during every timed epoch, so the mask "
    "updates are included; `every` is the number of steps between two updates, `constant` a "
    "`Constant` schedule (masks set at the first step, then fixed; tfmot has no such mode). "
    "Targets (tfprune): <= 1.5 at every step, <= 1.10 at every 50+ steps, <= 1.05 with "
    "constant masks.")
UPDATE_ABOUT = (
    "One update of every mask of a stack of 4 square Dense layers toward 90% sparsity (build "
    "only, no training), median of several calls after one warm-up call (200 at 10,000 weights, "
    "2M weights updated in all at the larger sizes, at least 5); each call raises the "
    "target (linearly from 81% to 90% over the calls), so every call selects anew. tfprune, each "
    "the path a "
    "user runs, `PruningCallback.update_masks` at a due step (one compiled call, zeros counted): "
    "`callback` = per-layer magnitude (the default strategy); `global` = one magnitude ranking "
    "over all tensors (`strategies.Global`; only up to `--global-max-size` weights, all sizes "
    "by default); `2:4` = N:M (at 50%); `units` = whole units by L2 norm; `unchanged` = per-layer "
    "magnitude at a constant 90% target, once reached (no mask can change: the update keeps the "
    "masks after one pass over each). tfmot (constant 90%, recomputed at every call): "
    "`pruning_obj.conditional_mask_update()` + `weight_mask_op()` on every wrapper, eagerly and "
    "inside a `tf.function` (as it runs in training).")
ARTIFACTS_ABOUT = (
    "Digits MLP pruned to 90% (magnitude), from the same dense weights in both frameworks. "
    "tfprune files come from `tfprune.export` (verified against the Keras model); tfmot files from "
    "its standard flow: `strip_pruning`, then `TFLiteConverter.from_keras_model` with "
    "`EXPERIMENTAL_SPARSITY` (+ `DEFAULT` for dynamic-range int8) and `tf.saved_model.save`. "
    "Sizes are the files (SavedModel: the directory, gzip of its tar). Latency: one LiteRT "
    "`invoke` on a batch of 1, 1 thread, median, same runtime for every file.")


# -------------------------------------------------------------------- main
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast smoke run (small data, 1 seed)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help="comma-separated measurements: " + ",".join(MEASUREMENTS))
    parser.add_argument("--tasks", default=",".join(_models.TASKS), help="quality/cost tasks")
    parser.add_argument("--methods", default=None, help="tfprune methods (default: all available)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick 1)")
    parser.add_argument("--update-sizes", default=None,
                        help="prunable weights per update model, e.g. 1e6,1e7,1e8")
    parser.add_argument("--skip-100m", action="store_true", help="leave out the 100M-weight model")
    parser.add_argument("--global-max-size", type=float, default=1e9,
                        help="largest update model timed with a global ranking (default: all)")
    parser.add_argument("--out", default="docs/BENCHMARKS.md")
    parser.add_argument("--json", default=None, help="raw results (default: docs/benchmarks.json)")
    parser.add_argument("--img-dir", default=None, help="plots (default: img/ beside --out)")
    parser.add_argument("--tfmot-python", default=None, help="interpreter of the tfmot side")
    parser.add_argument("--no-tfmot", action="store_true", help="run the tfprune side alone")
    parser.add_argument("--keep-work", action="store_true", help="keep the temporary files")
    parser.add_argument("--merge", action="store_true",
                        help="re-measure the --only sections into the existing --json, keeping "
                             "the others")
    args = parser.parse_args(argv)
    args.only = _choices("--only", args.only, MEASUREMENTS)
    args.tasks = _choices("--tasks", args.tasks, _models.TASKS)
    from_names = "magnitude,global_magnitude,taylor,movement,random,2:4,units"
    args.methods = tuple(_choices("--methods", args.methods or from_names, from_names.split(",")))
    n_seeds = args.seeds or len(_models.QUICK_SEEDS if args.quick else _models.SEEDS)
    args.seeds = tuple(range(n_seeds))
    args.sparsities = _models.QUICK_SPARSITIES if args.quick else _models.SPARSITIES
    if args.update_sizes:
        args.update_sizes = tuple(int(float(s)) for s in args.update_sizes.split(","))
    else:
        args.update_sizes = _models.QUICK_UPDATE_SIZES if args.quick else _models.UPDATE_SIZES
    args.global_max_size = int(args.global_max_size)
    if args.skip_100m:
        args.update_sizes = tuple(s for s in args.update_sizes if s < 100_000_000)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    args.json = args.json or os.path.join(out_dir, "benchmarks.json")
    args.img_dir = args.img_dir or os.path.join(out_dir, "img")
    return args


def _choices(flag, value, allowed) -> list:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise SystemExit(f"{flag} must be a comma-separated subset of {list(allowed)}. "
                         f"Received: {flag}={value!r}")
    return items


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notices of the many small fits
    start = time.perf_counter()
    work_dir = tempfile.mkdtemp(prefix="tfprune_bench_")
    try:
        if args.no_tfmot:
            worker = Worker(None, work_dir, "not run (--no-tfmot)")
        else:
            worker = find_worker(args.tfmot_python, work_dir)
        log(f"tfmot side: {worker.note}")
        results = {"meta": _meta(args, argv, worker)}
        if args.merge and os.path.exists(args.json):
            with open(args.json) as f:
                previous = json.load(f)
            meta = previous["meta"]
            # The other sections stay as measured before; the report lists
            # both commands and when each section was measured.
            meta.setdefault("remeasured", []).append(
                {"sections": list(args.only), "date": results["meta"]["date"],
                 "command": results["meta"]["commands"][0]})
            meta["commands"] = meta["commands"] + [results["meta"]["commands"][0]]
            results = {**previous, "meta": meta}
        for name in args.only:
            log(f"== {name} ==")
            results[name] = globals()[f"measure_{name}"](args, worker)
        if not args.merge:
            results["meta"]["seconds"] = time.perf_counter() - start
        text = _report.write(results, args.out, args.json, args.img_dir)
        print(text)
        log(f"Wrote {args.out}, {args.json} and plots in {args.img_dir} "
            f"({results['meta']['seconds'] / 60:.1f} min).")
    finally:
        if args.keep_work:
            log(f"Temporary files kept in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


def _meta(args, argv, worker) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    import tfprune

    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    worker_cmd = ("TF_USE_LEGACY_KERAS=1 " + " ".join(worker.command())
                  + "   # the tfmot side, one process per measurement")
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": _report.machine_info(),
        "versions": {
            "tfprune_side": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                             "keras": keras.__version__, "tfprune": tfprune.__version__,
                             "numpy": np.__version__},
            "tfmot_side": worker.versions,
        },
        "tfmot": worker.note,
        "commands": [command.strip(), worker_cmd],
        "seconds": 0.0,
    }


if __name__ == "__main__":
    sys.exit(main())
