"""One-shot pruning, measured: quality on real data, speed and memory at scale.

Three parts, written to `docs/oneshot.json` and rendered into
docs/oneshot.md (and the README's table) by `python tools/oneshot_tables.py`:

1. `shakespeare`: the character-level GPT of `examples/_char_gpt.py`
   trained on tiny Shakespeare (nanoGPT's CPU recipe, 2,000 steps), then
   pruned in one shot, from 128 training windows of 64 characters, by
   magnitude, Wanda and SparseGPT at 50%, 60% and 70% unstructured, 4:8
   and 2:4 (all transformer-block kernels; embeddings and head dense).
   Validation loss (480 fixed windows) of each; Wanda and SparseGPT over
   three calibration sets (mean, min and max; magnitude needs no data).
   Then each one-shot model of the first calibration set fine-tuned 200
   steps with the masks kept (`PruningCallback`), beside the dense model
   fine-tuned the same way.
2. `small`: the California housing MLP and the digits MLP of the
   benchmark suite (`benchmarks/_models.py`: same data, recipe and seeds),
   pruned to 50% and 90% (every kernel, the head too, as the training-time
   numbers of the README): training-time magnitude pruning
   (`tfprune.prune`, cubic schedule over the fine-tuning epochs), one-shot
   magnitude, Wanda and SparseGPT from the dense weights (256 training
   rows), and one-shot SparseGPT fine-tuned as long as the training-time
   run with its masks kept. Test metric, mean over 3 seeds with min-max.
3. `speed`: a GPT-2-small-sized keras_hub model (124M parameters),
   32 sequences of 128 tokens: wall time and peak memory of Wanda and
   SparseGPT at 50% and of Keras' own `model.quantize("gptq")`, each run
   in a process of its own (`benchmarks/_oneshot_speed.py`), methods
   alternated, `--repeats` rounds.

Run from the repository root:

    python -m benchmarks.oneshot                        # about 50 minutes on 2 cores
    python -m benchmarks.oneshot --only shakespeare     # one part (updates its key)
    python -m benchmarks.oneshot --quick --output /tmp/oneshot.json
    python tools/oneshot_tables.py                      # then rewrite the pages
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from benchmarks import _models  # noqa: E402
from benchmarks import _tfprune_side as side  # noqa: E402
from benchmarks._report import machine_info  # noqa: E402
from examples import _char_gpt as gpt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "docs", "oneshot.json")
PARTS = ("shakespeare", "small", "speed")
METHODS = {"magnitude": tfprune.oneshot.Magnitude, "wanda": tfprune.oneshot.Wanda,
           "sparsegpt": tfprune.oneshot.SparseGPT}
#: (label, sparsity, granularity) of the Shakespeare table.
PATTERNS = (("50%", 0.5, "unstructured"), ("60%", 0.6, "unstructured"),
            ("70%", 0.7, "unstructured"), ("4:8", None, tfprune.granularity.NM(4, 8)),
            ("2:4", None, tfprune.granularity.NM(2, 4)))


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------ shakespeare
def shakespeare(quick: bool) -> dict:
    steps, finetune, windows = (300, 30, 32) if quick else (2000, 200, 128)
    seeds = (0,) if quick else (0, 1, 2)
    patterns = PATTERNS[::4] if quick else PATTERNS
    text = gpt.Text()
    keras.utils.set_random_seed(0)
    model = gpt.build(text.vocabulary)
    start = time.perf_counter()
    gpt.train(model, text, steps)
    dense = gpt.val_loss(model, text)
    log(f"shakespeare: dense {dense:.4f} after {steps} steps ({time.perf_counter() - start:.0f} s)")
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    gpt.train(reference, text, finetune, seed=1, learning_rate=3e-4)
    records = []
    for label, sparsity, granularity in patterns:
        for name, cls in METHODS.items():
            method = cls(sparsity, granularity)
            losses, seconds = [], []
            for seed in seeds[:1] if name == "magnitude" else seeds:
                calibration, _ = text.windows("train", windows, seed=100 + seed)
                tic = time.perf_counter()
                pruned = tfprune.prune_oneshot(model, method, calibration, verbose=0)
                seconds.append(time.perf_counter() - tic)
                losses.append(gpt.val_loss(pruned, text))
                if seed == seeds[0]:
                    gpt.train(pruned, text, finetune, seed=1, learning_rate=3e-4,
                              callbacks=[tfprune.PruningCallback()])
                    tuned = gpt.val_loss(pruned, text)
                    sparse = tfprune.sparsity_report(tfprune.strip(pruned))
                keras.backend.clear_session(free_memory=False)
            records.append({"pattern": label, "method": name, "losses": losses,
                            "finetuned": tuned, "seconds": seconds,
                            "block_sparsity": _block_sparsity(sparse)})
            log(f"  {label} {name}: one-shot {np.mean(losses):.4f} {losses}, "
                f"fine-tuned {tuned:.4f} ({np.mean(seconds):.1f} s)")
    return {"config": {"steps": steps, "finetune_steps": finetune, "finetune_lr": 3e-4,
                       "calibration_windows": windows, "context": gpt.CONTEXT,
                       "val_windows": 480, "calibration_seeds": list(seeds),
                       "parameters": gpt.parameters(model), "layers": gpt.LAYERS,
                       "heads": gpt.HEADS, "dim": gpt.DIM},
            "dense": dense, "dense_finetuned": gpt.val_loss(reference, text),
            "records": records}


def _block_sparsity(report) -> float:
    rows = [r for r in report.rows if r["layer"].startswith("block_")]
    return sum(r["zeros"] for r in rows) / sum(r["parameters"] for r in rows)


# ------------------------------------------------------------------ small
def small(quick: bool) -> dict:
    seeds = (0,) if quick else (0, 1, 2)
    magnitude = side.available_methods(("magnitude",))[0][0]
    records = []
    for task in ("housing", "digits"):
        cfg = _models.task_configs(quick, [task])[task]
        data = _models.load_data(cfg)
        for seed in seeds:
            weights, dense = side.train_dense(cfg, data, seed)
            records.append(dense)
            rows = np.random.default_rng(seed).choice(len(data.x_train), 256, replace=False)
            calibration = data.x_train[np.sort(rows)]
            for sparsity in (0.5, 0.9):
                tic = time.perf_counter()
                final = side.finetune(cfg, data, weights, magnitude, sparsity, seed)
                records.append(side._record(cfg, data, final, seed, "training-time magnitude",
                                            sparsity, time.perf_counter() - tic))
                for name, cls in METHODS.items():
                    tic = time.perf_counter()
                    pruned = tfprune.prune_oneshot(side._model(cfg, data, weights), cls(sparsity),
                                                   calibration, protect_outputs=False, verbose=0)
                    records.append(side._record(cfg, data, tfprune.strip(pruned), seed,
                                                f"one-shot {name}", sparsity,
                                                time.perf_counter() - tic))
                    if name == "sparsegpt":
                        _models.compile_model(keras, pruned, cfg)
                        pruned.fit(data.x_train, data.y_train, batch_size=cfg.batch_size,
                                   epochs=cfg.finetune_epochs, verbose=0,
                                   callbacks=[tfprune.PruningCallback()])
                        records.append(side._record(
                            cfg, data, tfprune.strip(pruned), seed,
                            "one-shot sparsegpt + fine-tuning", sparsity,
                            time.perf_counter() - tic))
                keras.backend.clear_session(free_memory=False)
            log(f"  {task} seed {seed}: " + ", ".join(
                f"{r['method']} {r['target']:.0%} {r['metric']:.4g}"
                for r in records if r["task"] == task and r["seed"] == seed))
    tasks = {t: _models.task_configs(quick, [t])[t].to_dict() for t in ("housing", "digits")}
    return {"tasks": tasks, "seeds": list(seeds), "calibration_rows": 256,
            "records": records}


# ------------------------------------------------------------------ speed
def speed(quick: bool, repeats: int) -> dict:
    runs = [("wanda", False), ("sparsegpt", False), ("gptq", False)]
    records = []
    for round_ in range(1 if quick else repeats):
        for method, wrapped in runs + ([("sparsegpt", True)] if round_ == 0 else []):
            argv = [sys.executable, "-m", "benchmarks._oneshot_speed", method]
            argv += ["--wrapped"] * wrapped + ["--quick"] * quick
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                  env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if done.returncode or line is None:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
            record = dict(json.loads(line[len("RESULT "):]), round=round_)
            records.append(record)
            log(f"  speed round {round_} {method}{' (wrapped)' * wrapped}: "
                f"{record['seconds']:.1f} s, peak +{record['peak_over_before'] / 2**20:.0f} MB")
    return {"sequences": 32, "length": 128, "batch": 8, "records": records}


# ------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts among {', '.join(PARTS)}")
    parser.add_argument("--quick", action="store_true", help="a smoke run, minutes")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the speed part")
    parser.add_argument("--output", default=OUTPUT, help="the JSON file to update")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--only must be a comma-separated subset of {', '.join(PARTS)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    results = {}
    if os.path.exists(args.output):
        with open(args.output) as f:
            results = json.load(f)
    for part in args.parts:
        start = time.perf_counter()
        log(f"{part}...")
        result = {"shakespeare": lambda: shakespeare(args.quick),
                  "small": lambda: small(args.quick),
                  "speed": lambda: speed(args.quick, args.repeats)}[part]()
        result.update(date=time.strftime("%Y-%m-%d"), quick=args.quick,
                      seconds=round(time.perf_counter() - start, 1),
                      command=f"python -m benchmarks.oneshot --only {part}"
                      + " --quick" * args.quick, machine=machine_info(),
                      versions={"tensorflow": _version("tensorflow"), "keras": keras.__version__,
                                "keras_hub": _version("keras_hub")})
        results[part] = result
        tmp = args.output + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
        os.replace(tmp, args.output)
        log(f"wrote {os.path.relpath(args.output)} ({part}, {result['seconds']:.0f} s)")
    return results


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:  # pragma: no cover
        return "not installed"


if __name__ == "__main__":
    main()
