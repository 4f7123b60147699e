"""Side-by-side benchmarks of tfprune (Keras 3) and tfmot (tf_keras).

Run `python -m benchmarks --help`. The package itself imports nothing heavy:
`benchmarks._models` is shared by both sides (it takes the Keras module as
an argument), `benchmarks._tfprune_side` runs in the main process (Keras 3),
and `benchmarks._tfmot_worker` runs in a separate interpreter with
`TF_USE_LEGACY_KERAS=1`, so tfmot is never imported next to Keras 3.
"""
