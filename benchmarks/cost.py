"""Training cost of tfprune and tfmot, repeated in alternating processes.

    python -m benchmarks.cost                      # 5 repeats, 3 tasks: docs/cost.json
    python -m benchmarks.cost --repeats 7 --tasks housing
    python -m benchmarks.cost --quick              # smoke run, writes nothing

What one number means: in one process, a pruned `fit` and the unpruned
`fit` of the same model and data alternate (`rounds` times, one warm-up
epoch of each fit dropped); the ratio is the median pruned epoch over the
median unpruned epoch (`benchmarks._tfprune_side.cost` on Keras 3,
`benchmarks._tfmot_worker.cost` on tf_keras). The masks are updated every
1, 10 or 50 steps by a cubic schedule to 90% that runs through every timed
epoch, or set once and kept ("constant": tfprune's `Constant` schedule,
tfmot's `ConstantSparsity` with `end_step=0`, whose step check still runs
in every step).

Run-to-run noise on a shared 2-core machine (15-25% on epoch times) is
larger than most differences, so one run decides nothing: each repeat
starts a fresh process per tool and task, the two tools alternate which
goes first, and the report gives the median ratio over the repeats with
its range (min-max). A difference counts as decided only when the two
ranges do not overlap.

Tasks: the California-housing MLP (16-128-64-1, batch 128), the Beijing
PM2.5 LSTM(32) on 24-hour windows (batch 128) and a digits CNN (two 3x3
convolutions and a dense head on 8x8 images, batch 32). The tfmot side runs
in the interpreter `python -m benchmarks` finds (`.venv-bench`, made by
`make bench-env`); without it the tfprune side runs alone.

About 25 minutes on 2 cores for 5 repeats.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import _models
from benchmarks._models import log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "cost.json")
#: Steps between mask updates; "constant": masks set once, then kept.
SETTINGS = (1, 10, 50, "constant")
SPARSITY = 0.9
TOOLS = ("tfprune", "tfmot")
#: Medians tfprune aims at: constant masks <= 1.05; with updates, no
#: higher than tfmot's median in the same run.
CONSTANT_TARGET = 1.05


def _job(quick: bool, task: str) -> dict:
    cfg = _models.task_configs(quick, [task])[task]
    epochs, rounds = (1, 1) if quick else (3, 2)
    settings = (5, "constant") if quick else SETTINGS
    return {"kind": "cost", "tasks": {task: cfg.to_dict()}, "sparsity": SPARSITY,
            "epochs": epochs, "rounds": rounds, "frequencies": list(settings)}


def worker(job_path: str, result_path: str) -> int:
    """The tfprune side of one job, in this (fresh) process."""
    import tensorflow as tf

    from benchmarks import _tfprune_side as side

    tf.get_logger().setLevel("ERROR")
    with open(job_path) as f:
        job = json.load(f)
    configs = {n: _models.TaskConfig.from_dict(c) for n, c in job["tasks"].items()}
    records = side.cost(configs, job["sparsity"], job["epochs"], job["rounds"],
                        job["frequencies"])
    with open(result_path, "w") as f:
        json.dump(records, f)
    return 0


def _run_tfprune(job: dict, work_dir: str, count: int) -> list:
    job_path = os.path.join(work_dir, f"tfprune_job_{count}.json")
    result_path = os.path.join(work_dir, f"tfprune_result_{count}.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cost", "--worker", job_path,
                           result_path], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tfprune side failed (exit {proc.returncode}): "
                           + proc.stderr.strip()[-1500:])
    with open(result_path) as f:
        return json.load(f)


def _summary(values) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def aggregate(records) -> list:
    """Per task, setting and tool: the ratios over the repeats, their
    median and range, and the median unpruned and pruned epoch times."""
    groups = {}
    for r in records:
        groups.setdefault((r["task"], r["every"], r["framework"]), []).append(r)
    rows = []
    for (task, every, tool), recs in groups.items():
        rows.append({
            "task": task, "every": every, "framework": tool,
            "ratio": _summary([r["ratio"] for r in recs]),
            "plain_epoch_s": statistics.median(
                statistics.median(r["dense_epoch_s"]) for r in recs),
            "pruned_epoch_s": statistics.median(
                statistics.median(r["pruned_epoch_s"]) for r in recs),
            "steps_per_epoch": recs[0]["steps_per_epoch"],
        })
    return rows


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        return worker(*argv[1:3])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per tool and task")
    parser.add_argument("--tasks", default=",".join(_models.COST_TASKS))
    parser.add_argument("--quick", action="store_true", help="smoke run; writes nothing")
    parser.add_argument("--tfmot-python", default=None, help="interpreter of the tfmot side")
    parser.add_argument("--no-tfmot", action="store_true", help="the tfprune side alone")
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in _models.COST_TASKS]
    if bad or not tasks or args.repeats < 1:
        raise SystemExit(f"--tasks must be a subset of {list(_models.COST_TASKS)} and "
                         f"--repeats >= 1. Received: --tasks={args.tasks!r}, "
                         f"--repeats={args.repeats}")
    from benchmarks.__main__ import Worker, find_worker

    start = time.perf_counter()
    records, count = [], 0
    with tempfile.TemporaryDirectory(prefix="tfprune_cost_") as work_dir:
        tfmot = (Worker(None, work_dir, "not run (--no-tfmot)") if args.no_tfmot
                 else find_worker(args.tfmot_python, work_dir))
        log(f"tfmot side: {tfmot.note}")
        tools = [t for t in TOOLS if t == "tfprune" or tfmot.python is not None]
        for repeat in range(args.repeats):
            for i, task in enumerate(tasks):
                job = _job(args.quick, task)
                order = tools if (repeat + i) % 2 == 0 else tools[::-1]
                for tool in order:
                    count += 1
                    log(f"[repeat {repeat + 1}/{args.repeats}] {task}: {tool}")
                    found = (_run_tfprune(job, work_dir, count) if tool == "tfprune"
                             else tfmot.run(job))
                    for r in found:
                        r["repeat"], r["first"] = repeat, tool == order[0]
                    records += found
        versions = tfmot.versions
    result = {
        "about": __doc__.split("\n\n", 2)[2].split("\n\nAbout")[0].replace("\n", " "),
        "tasks": {t: _models.task_configs(args.quick, [t])[t].title for t in tasks},
        "settings": list(_job(args.quick, tasks[0])["frequencies"]),
        "repeats": args.repeats, "sparsity": SPARSITY,
        "job": {k: v for k, v in _job(args.quick, tasks[0]).items() if k in ("epochs", "rounds")},
        "tfmot": tfmot.note, "tfmot_versions": versions,
        "summary": aggregate(records), "records": records,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    from tools import cost_tables

    command = "python -m benchmarks.cost " + " ".join(shlex.quote(a) for a in argv
                                                       if a != "--quick")
    _models.save_result(result, cost_tables.table(result), start=start,
                        command=command.strip(), quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
