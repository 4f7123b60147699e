"""A character-level GPT pruned in one shot: magnitude, Wanda and SparseGPT.

End to end on real data (tiny Shakespeare, 1,115,394 characters; nanoGPT's
split: the first 90% to train, the last 10% to validate):

1. Train the "baby GPT" of `examples/_char_gpt.py` (4 blocks, 4 heads,
   128 wide, 0.80M parameters; nanoGPT's CPU recipe, 2,000 steps).
2. Prune copies of it in one shot with `tfprune.prune_oneshot`, from 128
   training windows of 64 characters (no labels, no training): magnitude,
   Wanda and SparseGPT, at `--sparsity` (default 50%) unstructured or with
   `--granularity 2:4`. The blocks are calibrated in order, each on the
   outputs of the blocks before it, already pruned; the embeddings and the
   output head stay dense. The validation loss of each is printed, with
   SparseGPT's report (per tensor: sparsity and layer-wise error).
3. Fine-tune the SparseGPT model briefly (`--finetune-steps`) with
   `tfprune.PruningCallback`: the masks stay as one-shot pruning set them.
4. Strip it and export it to a sparse TFLite file, checked against Keras in
   LiteRT by the exporter, and sample some text from it.

It writes `summary.json`, the dense and the pruned model and the calibration
windows (`calibration.npy`) to `--out`. `--quick` trains 200
steps, calibrates on 32 windows and fine-tunes 30 steps.

Run from the repository root:

```
python examples/llm_oneshot.py                      # about 4 minutes on 2 CPU cores
python examples/llm_oneshot.py --quick              # about a minute, used by the tests
python examples/llm_oneshot.py --granularity 2:4 --out /tmp/llm
```
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np

import tfprune

if __package__:
    from examples import _char_gpt as gpt
    from examples import _common
else:  # run as a script: python examples/llm_oneshot.py
    import _char_gpt as gpt
    import _common

DEFAULT_OUT = os.path.join("artifacts", "llm_oneshot")
METHODS = (("magnitude", tfprune.oneshot.Magnitude), ("wanda", tfprune.oneshot.Wanda),
           ("sparsegpt", tfprune.oneshot.SparseGPT))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run, for tests")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps of the dense model (default 2000; quick 200)")
    parser.add_argument("--calibration", type=int, default=None,
                        help="calibration windows (default 128; quick 32)")
    parser.add_argument("--sparsity", type=float, default=0.5,
                        help="unstructured sparsity (default 0.5)")
    parser.add_argument("--granularity", choices=("unstructured", "2:4"), default="unstructured")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help="fine-tuning steps with the masks kept (default 200; quick 30)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    for name, full, quick in (("steps", 2000, 200), ("calibration", 128, 32),
                              ("finetune_steps", 200, 30)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def method(cls, args):
    if args.granularity == "2:4":
        return cls(granularity=tfprune.granularity.NM(2, 4))
    return cls(args.sparsity)


def masks_of(model) -> dict:
    """`{tensor: mask}` of the wrappers of a pruned model (its blocks)."""
    return {pw.name: np.asarray(keras.ops.convert_to_numpy(m))
            for layer in model.layers if isinstance(layer, tfprune.PruningWrapper)
            for pw, m in zip(layer.pruned_weights, layer.masks)}


def main(argv=None) -> dict:
    """Runs the example; returns the summary also written to `summary.json`."""
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    text = gpt.Text()
    model = gpt.build(text.vocabulary)
    print(f"tiny Shakespeare: {len(text.train):,} training and {len(text.val):,} validation "
          f"characters, {text.vocabulary} distinct")
    print(f"char GPT: {gpt.LAYERS} blocks x {gpt.HEADS} heads x {gpt.DIM}, context "
          f"{gpt.CONTEXT}, {gpt.parameters(model):,} parameters")
    gpt.train(model, text, args.steps)
    dense = gpt.val_loss(model, text)
    print(f"dense, {args.steps} steps: validation loss {dense:.4f}\n")

    calibration, _ = text.windows("train", args.calibration, seed=7)
    model.save(os.path.join(args.out, "dense.keras"))  # for `tfprune oneshot` (docs/oneshot.md)
    np.save(os.path.join(args.out, "calibration.npy"), calibration)
    results, reports, pruned = {"dense": dense}, {}, {}
    label = args.granularity if args.granularity == "2:4" else f"{args.sparsity:.0%}"
    print(f"one shot to {label}, from {args.calibration} windows of {gpt.CONTEXT} characters:")
    for name, cls in METHODS:
        tic = time.perf_counter()
        pruned[name], reports[name] = tfprune.prune_oneshot(
            model, method(cls, args), calibration, verbose=0, return_report=True)
        results[name] = gpt.val_loss(pruned[name], text)
        print(f"  {name:<10} validation loss {results[name]:.4f} "
              f"({results[name] - dense:+.4f}), {time.perf_counter() - tic:.1f} s")
    print()
    print(reports["sparsegpt"])

    tuned = pruned["sparsegpt"]
    before = masks_of(tuned)
    gpt.train(tuned, text, args.finetune_steps, seed=1, learning_rate=3e-4,
              callbacks=[tfprune.PruningCallback()])
    results["sparsegpt_finetuned"] = gpt.val_loss(tuned, text)
    kept = all(np.array_equal(before[k], m) for k, m in masks_of(tuned).items())
    print(f"\nSparseGPT + {args.finetune_steps} fine-tuning steps: validation loss "
          f"{results['sparsegpt_finetuned']:.4f}; masks kept: {kept}")

    final = tfprune.strip(tuned)
    final.save(os.path.join(args.out, "sparsegpt.keras"))
    sparsity = tfprune.sparsity_report(final)
    exported = tfprune.export.tflite(final, os.path.join(args.out, "sparsegpt.tflite"))
    print(f"stripped: {sparsity.sparsity:.2%} of the prunable weights are zero; TFLite "
          f"{_common.kib(exported.bytes)}, {len(exported.sparse_tensors)} tensors stored sparse, "
          f"max |LiteRT - Keras| {exported.max_abs_error:.1e}")
    print("\nsampled from the pruned model:\n" + gpt.sample(final, text, length=160))

    summary = {
        "args": vars(args),
        "val_loss": results,
        "reports": {k: r.to_dict() for k, r in reports.items()},
        "masks_kept": kept,
        "sparsity": sparsity.sparsity,
        "tflite": {"bytes": exported.bytes, "sparse_tensors": list(exported.sparse_tensors),
                   "max_abs_error": exported.max_abs_error},
        "seconds": time.perf_counter() - start,
    }
    _common.save_json(os.path.join(args.out, "summary.json"), summary)
    print(f"\nwrote {args.out}/ (dense.keras, calibration.npy, sparsegpt.keras, "
          f"sparsegpt.tflite, summary.json) in "
          f"{summary['seconds']:.0f} s")
    return summary


if __name__ == "__main__":
    main()
