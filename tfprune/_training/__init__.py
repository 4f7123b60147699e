"""The training runtime: `PruningWrapper` and its state, the compiled mask
update (`update.MaskUpdate`, the one place a mask update happens),
`PruningCallback`, `QualityGuard`, `prune` and `strip`.
"""
