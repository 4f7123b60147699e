"""The training runtime: `PruningWrapper` and its state, the compiled mask
update (`update.MaskUpdate`, the one place a mask update happens), the
wrappers updated together (`cohort.Cohort`), `PruningCallback`,
`QualityGuard`, `prune` and `strip`.
"""
