"""Speed and memory of one-shot pruning on a GPT-2-small-sized model.

One process per run (`python -m benchmarks._oneshot_speed METHOD`), so that
each peak of resident memory is its own: it builds a keras_hub
`GPT2CausalLM` with GPT-2 small's shape (12 layers, 12 heads, 768 wide,
3,072 in the MLP, 50,257 tokens, 124M parameters; random weights, built
from the constructor, nothing downloaded), runs it once, then runs the
method on 32 calibration sequences of 128 token ids and prints one JSON
line: wall time of the method, resident memory before it and its peak
during it (sampled every 10 ms), and the model's bytes.

Methods: `wanda` and `sparsegpt` (`tfprune.prune_oneshot` at 50%
unstructured, batches of 8 sequences; in place, or `--wrapped` for the
default wrapped copy), and `gptq` (Keras' own `model.quantize("gptq")`,
4 bits, groups of 128, on the same model and sequences).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHAPE = dict(vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
             intermediate_dim=3072, max_sequence_length=1024)
QUICK_SHAPE = dict(SHAPE, num_layers=2)
SEQUENCES, LENGTH, BATCH = 32, 128, 8


def _rss() -> int:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) * 1024


class _Peak:
    """The highest resident memory seen while running (sampled)."""

    def __init__(self, every: float = 0.01):
        self.every, self.peak, self._stop = every, _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def run(method: str, wrapped: bool, quick: bool) -> dict:
    import keras
    import keras_hub
    import numpy as np

    import tfprune

    keras.utils.set_random_seed(0)
    shape = QUICK_SHAPE if quick else SHAPE
    backbone = keras_hub.models.GPT2Backbone(**shape)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    tokens = np.random.default_rng(0).integers(0, shape["vocabulary_size"],
                                               (SEQUENCES, LENGTH)).astype("int32")
    data = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
    model({k: v[:1] for k, v in data.items()})
    parameters = int(model.count_params())
    weights = int(sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in model.weights))
    before = _rss()
    extra = {}
    with _Peak() as peak:
        start = time.perf_counter()
        if method == "gptq":
            class TokenIds:  # the dataset holds token ids: nothing to tokenize
                def tokenize(self, x):
                    return x

            config = keras.quantizers.GPTQConfig(
                dataset=list(tokens), tokenizer=TokenIds(), num_samples=SEQUENCES,
                sequence_length=LENGTH, weight_bits=4, group_size=128)
            model.quantize("gptq", config=config)
        else:
            cls = {"wanda": tfprune.oneshot.Wanda, "sparsegpt": tfprune.oneshot.SparseGPT}[method]
            _, report = tfprune.prune_oneshot(model, cls(0.5), data, batch_size=BATCH,
                                              inplace=not wrapped, verbose=0,
                                              return_report=True)
            extra = {"statistics_bytes": report.peak_statistics_bytes,
                     "sparsity": report.sparsity, "blocks": len(report.blocks)}
        seconds = time.perf_counter() - start
    return {"method": method, "wrapped": wrapped, "seconds": seconds,
            "parameters": parameters,
            "weights_bytes": weights, "rss_before": before, "rss_peak": peak.peak,
            "peak_over_before": peak.peak - before, "backend": keras.backend.backend(),
            "layers": shape["num_layers"], **extra}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method", choices=("wanda", "sparsegpt", "gptq"))
    parser.add_argument("--wrapped", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 layers instead of 12")
    args = parser.parse_args(argv)
    print("RESULT " + json.dumps(run(args.method, args.wrapped, args.quick)), flush=True)


if __name__ == "__main__":
    main()
