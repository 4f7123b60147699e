"""Host time of `tfprune.compat.tfmot`'s UpdatePruningStep per batch.

    python -m benchmarks.tfmot_callback_cost [--wrappers 6] [--batches 500]

A Sequential of Dense(16) layers pruned whole by `prune_low_magnitude`
(one PolynomialDecay shared by every wrapper, as tfmot's API makes it),
the callback's `on_train_batch_begin` called on steps where no update is
due: the cost the callback adds to every batch. Prints the median over 5
rounds of the mean per call, in microseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(wrappers: int, batches: int) -> list:
    import keras

    import tfprune.compat.tfmot as tfmot

    sparsity = tfmot.sparsity.keras
    model = keras.Sequential([keras.Input((16,))] + [keras.layers.Dense(16)
                                                     for _ in range(wrappers)])
    schedule = sparsity.PolynomialDecay(0.2, 0.8, begin_step=0, end_step=10**6,
                                        frequency=10**6)
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile("sgd", "mse")
    callback = sparsity.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    for _ in range(50):  # warm-up
        callback.on_train_batch_begin(0)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batches):
            callback.on_train_batch_begin(0)
        rounds.append((time.perf_counter() - start) / batches * 1e6)
    return rounds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wrappers", type=int, default=6)
    parser.add_argument("--batches", type=int, default=500)
    args = parser.parse_args(argv)
    rounds = measure(args.wrappers, args.batches)
    print(f"UpdatePruningStep.on_train_batch_begin, {args.wrappers} wrappers, no update due: "
          f"median {statistics.median(rounds):.0f} us per batch "
          f"(rounds: {', '.join(f'{r:.0f}' for r in rounds)})")


if __name__ == "__main__":
    main()
