"""Where a due mask update runs: between train steps, or inside the step.

    python -m benchmarks.in_step             # 3 rounds of 4 timed epochs per fit
    python -m benchmarks.in_step --quick     # a smoke run

`PruningCallback(in_step=False)` runs a due update between two train steps:
one compiled call (`MaskUpdate`) with host work around it (the schedule,
the allocation's counts, reading the zero counts back). With
`in_step=True` (what `"auto"` picks on TensorFlow when it can) the train
step itself checks on the device whether an update is due and runs the
same traced function (`tfprune/_training/in_step.py`).

For the housing MLP and the PM2.5 LSTM of the cost benchmark (same data,
batch size and cubic schedule to 90%), masks updated every step and every
50 steps: the median epoch time of the plain model and of both paths
(alternated rounds, the first epoch of each fit dropped), each path's
ratio to the plain fit, and whether both paths end with bit-identical
weights and masks. Prints a table and writes `docs/in_step.json` (the
table included, as `table`: docs/pruning.md quotes it, and
`tests/project/test_doc_outputs.py` checks the quote).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from benchmarks import _models  # noqa: E402

MODES = {"between": False, "inside": True}
FREQUENCIES = (1, 10, 50)


def run(quick: bool) -> dict:
    epochs, rounds = (2, 1) if quick else (4, 3)
    results = {"epochs": epochs, "rounds": rounds, "records": []}
    for name, cfg in _models.task_configs(quick, ["housing", "pm25"]).items():
        data = _models.load_data(cfg)
        steps = _models.steps_per_epoch(cfg, len(data.x_train))
        keras.utils.set_random_seed(0)
        dense = _models.build_model(keras, cfg, data.x_train.shape[1:])
        _models.compile_model(keras, dense, cfg)
        total = steps * (1 + epochs) * rounds
        for every in FREQUENCIES:
            end = (total // every + 1) * every  # masks keep changing in every timed epoch
            schedule = tfprune.schedules.PolynomialDecay(0.0, 0.9, 0, end, power=3)
            fits = {"plain": (dense, list)}
            for mode, in_step in MODES.items():
                copy = keras.models.clone_model(dense)
                copy.set_weights(dense.get_weights())
                model = tfprune.prune(copy, schedule)
                _models.compile_model(keras, model, cfg)
                fits[mode] = (model, lambda in_step=in_step: [
                    tfprune.PruningCallback(every, in_step=in_step)])
            times = _time(fits, data, cfg, epochs, rounds)
            same = all(np.array_equal(a.numpy(), b.numpy()) for a, b in
                       zip(fits["between"][0].weights, fits["inside"][0].weights))
            plain = _models.median(times["plain"])
            results["records"].append({
                "task": name, "steps_per_epoch": steps, "every": every, "same_weights": same,
                "epoch_s": {k: _models.median(v) for k, v in times.items()},
                "ratio": {k: _models.median(times[k]) / plain for k in MODES},
            })
        keras.backend.clear_session(free_memory=False)
    return results


def table(results) -> str:
    rows = ["| task | update every | plain fit (ms/epoch) | between steps | inside the step "
            "| same weights and masks |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results["records"]:
        rows.append(f"| {r['task']} ({r['steps_per_epoch']} steps/epoch) | {r['every']} | "
                    f"{r['epoch_s']['plain'] * 1e3:.1f} | {r['ratio']['between']:.2f}x | "
                    f"{r['ratio']['inside']:.2f}x | {'yes' if r['same_weights'] else 'NO'} |")
    return "\n".join(rows)


def _time(fits, data, cfg, epochs, rounds) -> dict:
    times = {name: [] for name in fits}
    for _ in range(rounds):
        for name, (model, callbacks) in fits.items():
            timer = _models.epoch_timer(keras)
            model.fit(data.x_train, data.y_train, batch_size=cfg.batch_size, epochs=1 + epochs,
                      callbacks=callbacks() + [timer], verbose=0, shuffle=False)
            times[name].extend(timer.times[1:])
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one round")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "in_step.json"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(args.quick)
    # docs/pruning.md quotes the table.
    return _models.save_result(results, table(results), start=start, quick=args.quick,
                               out=args.out, command="python -m benchmarks.in_step")


if __name__ == "__main__":
    main()
