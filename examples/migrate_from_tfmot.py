"""The same model pruned with tfmot (tf_keras) and with tfprune (Keras 3).

tfmot 0.8.1 only works on legacy Keras 2 (`tf_keras`, `TF_USE_LEGACY_KERAS=1`);
on Keras 3 its `prune_low_magnitude` rejects a plain `keras.Sequential`.
tfprune does the same job on Keras 3. This example trains one digits MLP
(64 -> 128 -> 10, sklearn's 8x8 digits) to 80% sparsity both ways, with the
same schedule, update frequency, epochs and data, and prints both results.

The tfmot half runs in a separate Python process, because importing tfmot
switches TensorFlow to legacy Keras for the whole process. It needs an
interpreter with `tensorflow-model-optimization` and `tf-keras`: set
`TFPRUNE_TFMOT_PYTHON`, or create `.venv-bench` with `make bench-env`. Without
one, only the tfprune half runs.

The two halves, side by side:

    tfmot (tf_keras)                               tfprune (Keras 3)
    ---------------------------------------------  -------------------------------------------
    schedule = tfmot.sparsity.keras.PolynomialDecay(  schedule = tfprune.schedules.PolynomialDecay(
        0.0, 0.8, begin_step=0, end_step=END,             0.0, 0.8, begin_step=0, end_step=END)
        frequency=EVERY)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(pruned = tfprune.prune(model, schedule)
        model, pruning_schedule=schedule)
    pruned.fit(..., callbacks=[                    pruned.fit(..., callbacks=[
        tfmot.sparsity.keras.UpdatePruningStep()])     tfprune.PruningCallback(update_every=EVERY)])
    final = tfmot.sparsity.keras.strip_pruning(pruned) final = tfprune.strip(pruned)

Run from the repository root:

```
python examples/migrate_from_tfmot.py
python examples/migrate_from_tfmot.py --quick   # used by the tests
```
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

import tfprune

if __package__:
    from examples import _common
    from examples import datasets
else:  # run as a script
    import _common
    import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tfmot half. It runs in its own process with TF_USE_LEGACY_KERAS=1 and
# receives the shared settings and the data set's location as JSON.
TFMOT_CODE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot

    args = json.loads(sys.argv[1])
    data = np.load(args["data"])
    keras.utils.set_random_seed(args["seed"])
    model = keras.Sequential([
        keras.layers.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.set_weights([data[f"w{i}"] for i in range(4)])

    schedule = tfmot.sparsity.keras.PolynomialDecay(
        0.0, args["sparsity"], begin_step=0, end_step=args["end_step"],
        frequency=args["update_every"])
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(keras.optimizers.Adam(1e-3),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    pruned.fit(data["x_train"], data["y_train"], epochs=args["epochs"],
               batch_size=args["batch_size"], shuffle=False, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    final = tfmot.sparsity.keras.strip_pruning(pruned)

    kernels = [w for w in final.get_weights() if w.ndim == 2]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    total = sum(k.size for k in kernels)
    logits = final.predict(data["x_test"], verbose=0)
    print(json.dumps({
        "accuracy": float((logits.argmax(1) == data["y_test"]).mean()),
        "sparsity": zeros / total,
    }))
    """
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few epochs, for tests")
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default 20; quick 4)")
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("artifacts", "migrate_from_tfmot"))
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.quick else 20
    return args


def tfmot_python():
    """An interpreter that can import tfmot, or None."""
    candidates = [os.environ.get("TFPRUNE_TFMOT_PYTHON"), os.path.join(ROOT, ".venv-bench", "bin", "python")]
    for candidate in candidates:
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def with_tfprune(model, data, args, end_step):
    """The tfprune half: Keras 3, in this process."""
    schedule = tfprune.schedules.PolynomialDecay(0.0, args.sparsity, begin_step=0, end_step=end_step)
    pruned = tfprune.prune(model, schedule)
    pruned.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    pruned.fit(
        data.x_train, data.y_train, epochs=args.epochs, batch_size=args.batch_size,
        shuffle=False, verbose=0, callbacks=[tfprune.PruningCallback(update_every=args.update_every)],
    )
    final = tfprune.strip(pruned)
    logits = final.predict(data.x_test, verbose=0)
    return {
        "accuracy": float((logits.argmax(1) == data.y_test).mean()),
        "sparsity": tfprune.sparsity_report(final).sparsity,
    }


def with_tfmot(weights, data, args, end_step):
    """The tfmot half: tf_keras, in a separate process. None if unavailable."""
    python = tfmot_python()
    if python is None:
        return None
    os.makedirs(args.out, exist_ok=True)
    npz = os.path.join(args.out, "shared_inputs.npz")
    np.savez(npz, x_train=data.x_train, y_train=data.y_train, x_test=data.x_test,
             y_test=data.y_test, **{f"w{i}": w for i, w in enumerate(weights)})
    settings = {
        "data": npz, "seed": args.seed, "sparsity": args.sparsity, "end_step": end_step,
        "update_every": args.update_every, "epochs": args.epochs, "batch_size": args.batch_size,
    }
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [python, "-c", TFMOT_CODE, json.dumps(settings)], env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the tfmot process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    data = datasets.load_digits(seed=args.seed)
    steps_per_epoch = math.ceil(len(data.x_train) / args.batch_size)
    # Prune over the first half of the epochs, fine-tune at the target after.
    end_step = steps_per_epoch * max(1, args.epochs // 2)
    args.update_every = max(1, steps_per_epoch // 2)

    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    weights = [np.asarray(w) for w in model.get_weights()]  # same start for both

    results = {"tfprune (Keras 3)": with_tfprune(model, data, args, end_step)}
    tfmot = with_tfmot(weights, data, args, end_step)
    if tfmot is None:
        print("tfmot half skipped: no interpreter with tfmot (set TFPRUNE_TFMOT_PYTHON or run `make bench-env`).")
    else:
        results["tfmot 0.8.1 (tf_keras)"] = tfmot
    rows = [[name, f"{r['accuracy']:.2%}", f"{r['sparsity']:.2%}"] for name, r in results.items()]
    print(_common.format_table(["framework", "test accuracy", "sparsity"], rows))
    os.makedirs(args.out, exist_ok=True)
    _common.save_json(os.path.join(args.out, "summary.json"), results)
    return results


if __name__ == "__main__":
    main()
