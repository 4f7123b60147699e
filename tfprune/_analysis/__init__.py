"""Analysis of pruned models: `sparsity_report` and `sensitivity`."""
