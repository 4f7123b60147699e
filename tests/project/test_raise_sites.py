"""Every `ValueError` and `TypeError` that tfprune raises has a test.

`SITES` lists each place in `tfprune/` that creates one (or an error class
of tfprune derived from them), named by its file, its function and a
fragment of its message, never by line number, with the tests that trigger
it and check its message. The fast tests find the sites by AST and fail
when a site is not in `SITES` (a new error without a test), when an entry
matches no site or several (one removed or reworded) and when it names a
test that does not exist. The slow test runs the listed tests under a
tracer (`_raise_tracker.py`) and checks that each site is really raised by
one of its tests.

To add an error: write its test, then add a line here.
"""

import ast
import dataclasses
import functools
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tfprune"
TESTS = ROOT / "tests"
BASES = {"ValueError", "TypeError"}
# The tests under tests/backends/ run on JAX, as in the JAX pass of `make test`.
BACKEND_TESTS = ("backends/", "jax")

TE = "training/test_errors.py"
EE = "export/test_errors_export.py"
SE = "strategies/test_errors_strategies.py"
SI = "training/test_strategy_integration.py"
OE = "oneshot/test_errors_oneshot.py"
OC = "oneshot/test_cli_oneshot.py"
CA = "compat/test_tfmot_api.py"
XN = "test_prune_for_latency_on_xnnpack_says_what_breaks_the_rules"

# (file:function, message fragment, tests that raise it and check the message). Where one
# function raises the same message as a TypeError and a ValueError, "#TypeError" or
# "#ValueError" after the function tells the two apart.
SITES = [
    # ------------------------------------------------------------- _analysis
    ("_analysis/report.py:sparsity_report", "path does not exist",
     [f"{TE}::test_not_a_model_or_layer"]),
    ("_analysis/report.py:sparsity_report", "or a path to a `.keras` file",
     [f"{TE}::test_sparsity_report_path_that_is_not_a_keras_file"]),
    ("_analysis/report.py:sparsity_report", "a layer or a `.keras` path",
     [f"{TE}::test_not_a_model_or_layer"]),
    ("_analysis/sensitivity.py:_batches", "must yield (x, y) batches",
     ["analysis/test_errors_analysis.py::test_a_dataset_must_yield_x_y_batches"]),
    ("_analysis/sensitivity.py:_batches", "tuple or a tf.data.Dataset",
     ["analysis/test_sensitivity.py::test_bad_arguments"]),
    ("_analysis/sensitivity.py:_metric_function", "must be a Keras metric name",
     ["analysis/test_sensitivity.py::test_bad_arguments"]),
    ("_analysis/sensitivity.py:sensitivity", "must be a Keras model",
     ["analysis/test_errors_analysis.py::test_model_must_be_a_keras_model"]),
    ("_analysis/sensitivity.py:sensitivity", "must not be empty",
     ["analysis/test_errors_analysis.py::test_sparsities_must_not_be_empty"]),
    ("_analysis/sensitivity.py:sensitivity", "match no prunable layer",
     ["analysis/test_sensitivity.py::test_bad_arguments"]),
    # ----------------------------------------------------------------- _base
    ("_base/config.py:lookup", "Unknown {}; expected one of",
     ["strategies/test_criteria.py::test_get_resolves_names_objects_and_configs",
      f"{OE}::test_method_arguments"]),
    ("_base/config.py:lookup", "or its name",
     ["strategies/test_criteria.py::test_get_resolves_names_objects_and_configs",
      f"{OE}::test_method_arguments"]),
    ("_base/graph.py:check_model", "must be a Keras model or layer",
     [f"{TE}::test_not_a_model_or_layer"]),
    ("_base/graph.py:check_model", "must be built before it can be pruned",
     [f"{TE}::test_model_that_is_not_built"]),
    ("_base/sensitivity_table.py:metric_mode", "`mode` must be 'auto', 'min' or 'max'",
     ["training/test_quality_guard.py::test_arguments_and_config"]),
    ("_base/validation.py:check_sparsity", "must be a number in [0, 1)",
     [f"{TE}::test_bad_sparsity"]),
    ("_base/validation.py:check_sparsity", "0 keeps every weight", [f"{TE}::test_bad_sparsity"]),
    # check_step: the same message for the wrong type (TypeError) and a negative step.
    ("_base/validation.py:check_step#TypeError", "non-negative integer step",
     [f"{TE}::test_bad_polynomial_decay"]),
    ("_base/validation.py:check_step#ValueError", "non-negative integer step",
     [f"{TE}::test_bad_polynomial_decay"]),
    ("_base/validation.py:check_positive_int#TypeError", "must be a positive integer",
     [f"{TE}::test_bad_update_every"]),
    ("_base/validation.py:check_positive_int#ValueError", "must be a positive integer",
     [f"{TE}::test_bad_update_every"]),
    ("_base/walk.py:register_prunable_layer", "`layer_class` must be a subclass",
     [f"{TE}::test_bad_register_prunable_layer"]),
    ("_base/walk.py:register_prunable_layer", "`weights` must be a non-empty dict",
     [f"{TE}::test_bad_register_prunable_layer"]),
    # ---------------------------------------------------------------- _masks
    ("_masks/penalties.py:_Penalty.__init__#TypeError", "`strength` must be a number >= 0",
     [f"{SE}::test_penalty_strength_is_a_number_at_least_zero"]),
    ("_masks/penalties.py:_Penalty.__init__#ValueError", "`strength` must be a number >= 0",
     ["strategies/test_criteria.py::test_group_lasso_sums_the_norms_of_doomed_units",
      f"{SE}::test_penalty_strength_is_a_number_at_least_zero"]),
    ("_masks/penalties.py:GroupLasso.__init__", "`axis` must be an integer",
     ["masks/test_errors_masks.py::test_group_lasso_axis_must_be_an_integer"]),
    ("_masks/units.py:_per_unit", "does not split into",
     ["masks/test_errors_masks.py::test_a_unit_axis_that_does_not_split_into_the_gates"]),
    ("_masks/units.py:unit_totals", "disagree on the number of units",
     ["masks/test_errors_masks.py::test_tensors_of_a_group_that_disagree_on_the_units"]),
    # ---------------------------------------------------------------- _shrink
    ("_shrink/_core.py:shrink", "(Sequential or Functional)",
     ["shrink/test_shrink.py::test_bad_arguments_are_refused"]),
    ("_shrink/_core.py:shrink", "`return_report` must be a bool",
     ["shrink/test_shrink.py::test_bad_arguments_are_refused"]),
    ("_shrink/_core.py:shrink", "is a subclassed model",
     ["shrink/test_shrink.py::test_subclassed_model_is_refused"]),
    ("_shrink/_core.py:shrink", "must be built with known inputs",
     ["shrink/test_errors_shrink.py::test_a_model_that_is_not_built_cannot_be_shrunk"]),
    ("_shrink/_core.py:_verify", "could not keep model",
     ["shrink/test_shrink.py::test_a_shrunk_model_that_differs_is_never_returned"]),
    ("_shrink/_surgery.py:register_surgery", "`layer_class` must be a subclass",
     ["shrink/test_errors_shrink.py::test_register_surgery_needs_a_layer_class"]),
    ("_shrink/_surgery.py:register_surgery", "`surgery` must be a `Surgery` instance",
     ["shrink/test_shrink.py::test_registered_surgery_lets_units_through_a_custom_layer"]),
    # -------------------------------------------------------------- _training
    ("_training/callback.py:PruningCallback.__init__", "`log_dir` must be a path string",
     [f"{TE}::test_bad_log_dir"]),
    ("_training/callback.py:PruningCallback.__init__", "`in_step` must be",
     ["training/test_in_step.py::test_in_step_must_be_auto_or_a_bool"]),
    ("_training/callback.py:PruningCallback._install_in_step", "cannot run inside the train step",
     ["training/test_in_step.py::test_auto_updates_between_steps_where_the_step_cannot"]),
    ("_training/callback.py:PruningCallback._step", "needs a compiled model",
     [f"{TE}::test_callback_on_a_model_without_optimizer"]),
    ("_training/callback.py:PruningCallback.on_train_begin", "found no PruningWrapper",
     [f"{TE}::test_callback_on_a_model_without_wrappers"]),
    ("_training/callback.py:PruningCallback.on_train_begin", "are not built",
     [f"{TE}::test_callback_on_a_model_whose_wrappers_are_not_built"]),
    ("_training/cohort.py:plan_cohorts", "must share one strategy",
     [f"{SI}::test_model_wide_allocations_need_one_schedule_and_one_strategy"]),
    ("_training/cohort.py:plan_cohorts", "must share one schedule",
     [f"{SI}::test_model_wide_allocations_need_one_schedule_and_one_strategy"]),
    ("_training/prune.py:_Selector.__init__", "`layers` must be a layer name",
     [f"{TE}::test_layers_of_the_wrong_type"]),
    ("_training/prune.py:_Selector.check_names", "match no layer of model",
     [f"{TE}::test_layer_name_that_matches_nothing"]),
    ("_training/prune.py:prune", "is already pruned", [f"{TE}::test_pruning_a_pruned_model"]),
    ("_training/prune.py:prune", "has nothing tfprune can prune",
     [f"{TE}::test_pruning_a_layer_with_nothing_to_prune"]),
    ("_training/prune.py:prune", "nothing is left to prune",
     [f"{SI}::test_regression_strategy_leaves_input_layer_and_head_unpruned"]),
    ("_training/prune.py:prune", "was selected for pruning",
     [f"{TE}::test_selection_that_selects_nothing"]),
    ("_training/prune.py:_protected_tensors", "but the schedule ends at",
     [f"{SI}::test_nm_granularity_is_valid_in_every_group"]),
    ("_training/quality_guard.py:QualityGuard.__init__", "`monitor` must be a metric name",
     [f"{TE}::test_quality_guard_monitor_must_be_a_metric_name"]),
    ("_training/quality_guard.py:QualityGuard.__init__#TypeError", "rule",
     ["training/test_quality_guard.py::test_arguments_and_config"]),
    ("_training/quality_guard.py:QualityGuard.__init__#ValueError", "rule",
     ["training/test_quality_guard.py::test_arguments_and_config"]),
    ("_training/quality_guard.py:QualityGuard.__init__", "`baseline` must be a number or None",
     ["training/test_quality_guard.py::test_arguments_and_config"]),
    ("_training/quality_guard.py:QualityGuard.on_train_begin", "found no PruningWrapper",
     ["training/test_quality_guard.py::test_guards_only_pruned_models"]),
    ("_training/strip.py:strip", "must be a Keras model or layer",
     [f"{TE}::test_not_a_model_or_layer"]),
    ("_training/update.py:MaskUpdate.raise_diverged", "holds NaN or infinite values",
     [f"{TE}::test_non_finite_weights_at_a_mask_update"]),
    ("_training/wrapper.py:PruningWrapper.__init__", "must be a `keras.layers.Layer` instance",
     [f"{TE}::test_not_a_layer_for_the_wrapper"]),
    ("_training/wrapper.py:PruningWrapper.__init__", "is already wrapped",
     [f"{TE}::test_wrapping_a_wrapper_twice"]),
    ("_training/wrapper.py:PruningWrapper.__init__", "already contains PruningWrapper layers",
     [f"{TE}::test_wrapping_a_model_that_holds_wrappers"]),
    ("_training/wrapper.py:PruningWrapper._create_masks", "has no weight that tfprune can prune",
     [f"{TE}::test_layer_without_prunable_weights"]),
    ("_training/wrapper.py:PruningWrapper._create_masks", "collects gradients during `fit`",
     ["backends/test_jax.py::test_gradient_criteria_name_the_backends_that_run_them"]),
    ("_training/wrapper.py:PruningWrapper.load_own_variables", "pruned with another strategy",
     [f"{TE}::test_loading_weights_saved_with_another_strategy"]),
    ("_training/wrapper.py:PruningWrapper.check_finite", "holds NaN or infinite values",
     [f"{TE}::test_check_finite_names_the_weight"]),
    ("_training/wrapper.py:PruningWrapper.prune_to", "is not built yet",
     [f"{TE}::test_prune_to_before_the_wrapper_is_built"]),
    ("_training/subclassed.py:rewrap", "its class no",
     ["training/test_subclassed.py::"
      "test_loading_a_pruned_subclassed_model_whose_class_no_longer_has_the_layer"]),
    # ------------------------------------------------------------------- cli
    ("cli.py:_read_arrays", "not a .npy or .npz file",
     ["export/test_cli.py::test_errors_exit_1_with_one_line"]),
    ("cli.py:_export", "MODEL must be a .keras file",
     [f"{EE}::test_cli_model_must_be_a_keras_file"]),
    ("cli.py:_export", "pass --overwrite to replace it",
     ["export/test_cli.py::test_existing_output_needs_overwrite"]),
    ("cli.py:_export", "could not load the model",
     ["export/test_cli.py::test_errors_exit_1_with_one_line"]),
    ("cli.py:_oneshot", "MODEL must be a .keras file", [f"{OC}::test_usage_and_file_errors"]),
    ("cli.py:_oneshot", "pass --overwrite to replace it",
     [f"{OC}::test_sparsegpt_from_a_npy_file"]),
    ("cli.py:_oneshot", "could not load the model", [f"{OC}::test_usage_and_file_errors"]),
    # ---------------------------------------------------------------- compat
    ("compat/tfmot/_callbacks.py:UpdatePruningStep._clock", "counts steps with the model's",
     [f"{CA}::test_callback_errors"]),
    ("compat/tfmot/_callbacks.py:UpdatePruningStep.on_train_begin", "steps_per_execution=1",
     [f"{CA}::test_callback_errors"]),
    ("compat/tfmot/_callbacks.py:PruningSummaries.__init__", "must be a non-empty string",
     [f"{CA}::test_callback_errors"]),
    ("compat/tfmot/_policy.py:PruneForLatencyOnXNNPack.ensure_model_supports_pruning",
     "Subclassed models are not supported", [f"{CA}::{XN}"]),
    ("compat/tfmot/_policy.py:PruneForLatencyOnXNNPack.ensure_model_supports_pruning",
     "Unbuilt models are not supported", [f"{CA}::{XN}"]),
    ("compat/tfmot/_policy.py:PruneForLatencyOnXNNPack.ensure_model_supports_pruning",
     "Could not find `Conv2D 3x3`", [f"{CA}::{XN}"]),
    ("compat/tfmot/_policy.py:PruneForLatencyOnXNNPack.ensure_model_supports_pruning",
     "Could not find a `GlobalAveragePooling2D`", [f"{CA}::{XN}"]),
    ("compat/tfmot/_policy.py:PruneForLatencyOnXNNPack.ensure_model_supports_pruning",
     "is not supported for the PruneForLatencyOnXNNPack", [f"{CA}::{XN}"]),
    ("compat/tfmot/_prune.py:_subclassed_error", "Subclassed models are not supported",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_prune.py:_type_error", "can only prune an object of the following",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_prune.py:strip_pruning", "Expected model to be a `keras.Model`",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_schedules.py:_check_int", "must be an integer", [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_step", "begin_step should be >= 0",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_step", "end_step cannot be -1",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_step", "end_step can be -1 or >= 0",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_step", "begin_step should be <= end_step",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_step", "frequency should be > 0",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_sparsity", "must be a number",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:_validate_sparsity", "must be in range [0,1)",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:PolynomialDecay.__init__", "needs end_step > begin_step",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:PolynomialDecay.__init__", "power must be a number",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:deserialize", "must be a PruningSchedule or its get_config",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_schedules.py:deserialize", "Unknown pruning schedule",
     [f"{CA}::test_schedule_errors"]),
    ("compat/tfmot/_wrapper.py:unsupported_error", "Please initialize `Prune` with a supported",
     [f"{CA}::test_wrapper_and_prune_errors",
      "compat/test_tfmot_programs.py::test_unsupported_layers_and_objects_fail_as_in_tfmot"]),
    ("compat/tfmot/_wrapper.py:_m_by_n", "must be a tuple/list of 2 integers. {}",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_wrapper.py:_m_by_n", "must be a tuple/list of 2 integers; element",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_wrapper.py:_m_by_n", "m be must smaller than n",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_wrapper.py:_block", "block_size must be a tuple/list of 2 positive",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_wrapper.py:PruneLowMagnitude.__init__", "Unsupported pooling type",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    ("compat/tfmot/_wrapper.py:PruneLowMagnitude.__init__", "with a `Layer` instance",
     [f"{CA}::test_wrapper_and_prune_errors"]),
    # --------------------------------------------------------------- oneshot
    ("oneshot/_api.py:_check_verbose", "must be 0, 1, 2 or 'auto'",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:_selection", "not both", [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:_selection", "must be a regular expression, a list of them",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:_selection", "invalid regular expression",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:prune_oneshot", "`inplace` must be True or False",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:prune_oneshot", "calibrates on data",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_api.py:prune_oneshot", "is already pruned (it holds",
     [f"{OE}::test_already_pruned_and_nothing_to_prune"]),
    ("oneshot/_api.py:prune_oneshot", "has nothing to prune",
     [f"{OE}::test_already_pruned_and_nothing_to_prune"]),
    ("oneshot/_data.py:calibration_batches", "must be an array, a list or dict of arrays",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_data.py:calibration_batches", "holds no samples",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_data.py:flat_inputs", "its inputs {} by name",
     ["oneshot/test_prune_oneshot.py::test_dict_inputs_and_a_nested_model"]),
    ("oneshot/_data.py:flat_inputs", "names inputs that model",
     [f"{OE}::test_prune_oneshot_arguments", f"{OC}::test_named_inputs_from_a_npz_file_and_nm"]),
    ("oneshot/_data.py:flat_inputs", "must give model '{}' {} inputs",
     [f"{OE}::test_prune_oneshot_arguments"]),
    ("oneshot/_data.py:flat_inputs", "does not fit input",
     [f"{OE}::test_prune_oneshot_arguments",
      "oneshot/test_prune_oneshot.py::test_dict_inputs_and_a_nested_model"]),
    ("oneshot/_engine.py:_prune", "cannot be inverted", [f"{OE}::test_nan_in_the_data"]),
    ("oneshot/_methods.py:OneShotMethod.__init__", "keeps exactly",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:OneShotMethod.__init__", "must be 'output', 'tensor' or None",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:OneShotMethod.__init__", "applies to unstructured pruning only",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:OneShotMethod._check_granularity", "is not one of them",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:OneShotMethod._check_granularity", "input features (axis='input')",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:SparseGPT.__init__#TypeError", "`damping` must be a number > 0",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:SparseGPT.__init__#ValueError", "`damping` must be a number > 0",
     [f"{OE}::test_method_arguments"]),
    ("oneshot/_methods.py:SparseGPT.__init__", "so that N:M groups do not straddle",
     [f"{OE}::test_method_arguments"]),
    # -------------------------------------------- schedules, criteria, granularity
    ("criteria.py:Random.__init__", "`seed` must be a non-negative integer",
     ["strategies/test_criteria.py::test_random_rejects_a_bad_seed"]),
    ("granularity.py:Granularity.check", "allows a sparsity of at most",
     ["strategies/test_granularity.py::test_nm_output_axis_and_limits"]),
    ("granularity.py:_check_reduction", "`reduction` must be {}",
     [f"{SE}::test_block_reduction_is_mean_sum_or_max"]),
    ("granularity.py:Block.__init__", "`block_shape` must be a non-empty tuple",
     ["strategies/test_granularity.py::test_block_rejects_bad_shapes"]),
    ("granularity.py:Block._tiling", "has more axes than the tensor",
     ["strategies/test_granularity.py::test_block_rejects_bad_shapes"]),
    ("granularity.py:NM.__init__#TypeError", "rule",
     [f"{SE}::test_nm_n_and_m_are_integers_with_n_below_m"]),
    ("granularity.py:NM.__init__#ValueError", "rule",
     ["strategies/test_granularity.py::test_nm_output_axis_and_limits",
      f"{SE}::test_nm_n_and_m_are_integers_with_n_below_m"]),
    ("granularity.py:NM.__init__#TypeError", "`axis` must be 'input', 'output' or an integer",
     [f"{SE}::test_nm_axis_is_named_or_an_integer"]),
    ("granularity.py:NM.__init__#ValueError", "`axis` must be 'input', 'output' or an integer",
     [f"{SE}::test_nm_axis_is_named_or_an_integer"]),
    ("schedules.py:PolynomialDecay.__init__", "must not be below `initial_sparsity`",
     [f"{TE}::test_bad_polynomial_decay"]),
    ("schedules.py:PolynomialDecay.__init__", "`end_step` must be >= `begin_step`",
     [f"{TE}::test_bad_polynomial_decay"]),
    ("schedules.py:PolynomialDecay.__init__", "`power` must be a number > 0",
     [f"{TE}::test_bad_polynomial_decay"]),
    ("schedules.py:get", "or a `tfprune.schedules.PruningSchedule`",
     ["strategies/test_schedules.py::test_get_rejects_other_types"]),
    # ------------------------------------------------------------ strategies
    ("strategies/_allocation.py:_check_fraction", "must be a number in {}",
     [f"{SE}::test_allocation_bounds_are_fractions"]),
    ("strategies/_allocation.py:Allocation.__init__", "`max_sparsity` must be >= `min_sparsity`",
     ["strategies/test_allocation.py::test_unreachable_targets_are_errors"]),
    ("strategies/_allocation.py:Allocation.allocate", "Candidate names must be unique",
     [f"{SE}::test_candidate_names_must_be_unique"]),
    ("strategies/_allocation.py:Allocation.allocate", "cannot be reached",
     ["strategies/test_allocation.py::test_unreachable_targets_are_errors"]),
    ("strategies/_allocation.py:Global.__init__", "`normalize` must be None",
     ["strategies/test_allocation.py::test_unreachable_targets_are_errors"]),
    ("strategies/_allocation.py:Global._split", "needs the item scores of every candidate",
     ["strategies/test_allocation.py::test_unreachable_targets_are_errors"]),
    ("strategies/_allocation.py:PerLayer.__init__", "`sparsities` must be a dict",
     [f"{SE}::test_per_layer_needs_a_dict_of_names"]),
    ("strategies/_sensitivity.py:SensitivityAllocation.__init__", "`table` must be a SensitivityTable",
     [f"{SE}::test_sensitivity_allocation_needs_a_table"]),
    ("strategies/_sensitivity.py:SensitivityAllocation.__init__#TypeError",
     "`step` must be a number in (0, 0.5]", [f"{SE}::test_sensitivity_allocation_step"]),
    ("strategies/_sensitivity.py:SensitivityAllocation.__init__#ValueError",
     "`step` must be a number in (0, 0.5]", [f"{SE}::test_sensitivity_allocation_step"]),
    ("strategies/_sensitivity.py:SensitivityAllocation._curve", "is not in the sensitivity table",
     ["strategies/test_allocation.py::test_sensitivity_allocation_spares_sensitive_layers"]),
    ("strategies/_sensitivity.py:SensitivityAllocation._split", "only reaches",
     ["strategies/test_allocation.py::test_sensitivity_allocation_spares_sensitive_layers"]),
    ("strategies/_strategy.py:_check_protect", "`protect` must be a list",
     ["strategies/test_strategies.py::test_get_presets_and_errors"]),
    ("strategies/_strategy.py:Strategy.__init__", "`regularizer` must be callable",
     [f"{SE}::test_strategy_regularizer_must_be_callable"]),
    ("strategies/_strategy.py:get", "Unknown strategy",
     ["strategies/test_strategies.py::test_get_presets_and_errors"]),
    ("strategies/_strategy.py:get", "must be a preset name",
     ["strategies/test_strategies.py::test_get_presets_and_errors"]),
    # ---------------------------------------------------------------- export
    ("export/_atomic.py:check_destination", "must be a string or a path-like object",
     ["export/test_export_saved_model.py::test_bad_arguments"]),
    ("export/_atomic.py:check_destination", "must name a file or directory to create",
     [f"{EE}::test_path_must_name_a_file"]),
    ("export/_atomic.py:check_destination", "must be inside an existing directory",
     ["export/test_export_tflite.py::test_parent_must_be_a_directory"]),
    ("export/_atomic.py:check_destination", "cannot be written to",
     ["export/test_export_tflite.py::test_unwritable_directory"]),
    ("export/_atomic.py:check_destination", "already exists",
     ["export/test_export_saved_model.py::test_existing_path_needs_overwrite"]),
    ("export/_atomic.py:Staging.__enter__", "cannot be written to",
     [f"{EE}::test_staging_in_a_directory_that_became_unwritable"]),
    ("export/_atomic.py:Staging.commit", "already exists",
     ["export/test_export_faults.py::test_path_created_during_the_export_is_not_replaced"]),
    # On JAX, before the export is handed to a TensorFlow process.
    ("export/_backend.py:elsewhere", "a Python callable cannot reach",
     ["backends/test_jax.py::test_export_from_jax_runs_in_a_tensorflow_process"]),
    # Wrapped by `inspect` in its "could not be read" error.
    ("export/_inspect.py:_tflite", "not a TFLite flatbuffer",
     ["export/test_cli.py::test_errors_exit_1_with_one_line"]),
    ("export/_inspect.py:inspect", "must be a string or a path-like object",
     [f"{EE}::test_inspect_path_type"]),
    ("export/_inspect.py:inspect", "`path` does not exist",
     [f"{EE}::test_inspect_path_that_does_not_exist"]),
    ("export/_inspect.py:inspect", "`path` must be a `.keras` file",
     ["export/test_cli.py::test_errors_exit_1_with_one_line"]),
    ("export/_inspect.py:inspect", "could not be read as",
     ["export/test_cli.py::test_errors_exit_1_with_one_line"]),
    ("export/_litert.py:run", "one array per input of the file",
     [f"{EE}::test_litert_run_needs_one_array_per_input"]),
    ("export/_model.py:load", "or a path to a `.keras` file",
     ["export/test_export_saved_model.py::test_bad_arguments"]),
    ("export/_model.py:load", "path does not exist",
     [f"{EE}::test_keras_path_that_does_not_exist"]),
    ("export/_model.py:load", "or a `.keras` path",
     ["export/test_export_saved_model.py::test_bad_arguments"]),
    ("export/_model.py:load", "must be built before it is exported",
     [f"{EE}::test_model_that_is_not_built"]),
    ("export/_model.py:_as_arrays", "or for a model with dict inputs",
     [f"{EE}::test_sample_inputs_as_a_dict"]),
    ("export/_model.py:_as_arrays", "must be an array or a list of arrays. ",
     [f"{EE}::test_sample_inputs_that_are_not_arrays"]),
    ("export/_model.py:input_specs", "has no known input shape",
     ["export/test_export_saved_model.py::test_subclassed_model_needs_sample_inputs"]),
    ("export/_model.py:check_inputs", "must hold one array per model input",
     [f"{EE}::test_sample_inputs_of_the_wrong_rank"]),
    ("export/_model.py:check_inputs", "must match the model's input shapes",
     ["export/test_export_saved_model.py::test_sample_inputs_are_checked"]),
    ("export/_model.py:random_inputs", "`sample_inputs` is needed",
     [f"{EE}::test_unknown_length_needs_sample_inputs"]),
    ("export/_model.py:check_bool", "must be True or False",
     ["export/test_export_saved_model.py::test_bad_arguments"]),
    ("export/_model.py:check_tolerance", "`tolerance` must be a positive number",
     [f"{EE}::test_tolerance_must_be_positive"]),
    ("export/_recurrent.py:check_fixed_length", "leaves the sequence length unknown",
     ["export/test_export_tflite.py::test_sequence_length_must_be_fixed"]),
    ("export/_tflite.py:_check_options", "`quantize` must be None",
     ["export/test_export_tflite.py::test_unknown_quantize"]),
    ("export/_tflite.py:representative_samples", "or a callable returning an iterable",
     [f"{EE}::test_representative_data_callable_that_returns_no_iterable"]),
    ("export/_tflite.py:representative_samples", "must hold at least one sample",
     [f"{EE}::test_representative_data_without_samples"]),
    ("export/_tflite.py:tflite", "is required for quantize=\"int8\"",
     ["export/test_export_tflite.py::test_int8_needs_representative_data"]),
]


@dataclasses.dataclass(frozen=True)
class Site:
    """One `ValueError`/`TypeError(...)` of tfprune."""

    where: str  # "file:function", the file relative to tfprune/
    error: str
    message: str  # its literal text, "{}" for each formatted value
    line: int
    end_line: int

    def __str__(self):
        file = self.where.split(":")[0]
        return f"tfprune/{file}:{self.line} ({self.where}) {self.error}: {self.message}"


def _error_classes(trees) -> set:
    """`BASES` and the classes of tfprune derived from them."""
    classes = set(BASES)
    changed = True
    while changed:
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in classes:
                    if {_name(b) for b in node.bases} & classes:
                        classes.add(node.name)
                        changed = True
    return classes


def _text(node) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return ast.unparse(node)


def _name(node):
    return getattr(node, "id", getattr(node, "attr", None))


def find_sites(package=PACKAGE) -> list:
    """Every call that creates one of the error classes (and every bare
    `raise ValueError`) in the modules under `package`."""
    files = sorted(package.rglob("*.py"))
    trees = {path: ast.parse(path.read_text(), str(path)) for path in files}
    classes = _error_classes(trees.values())
    sites = []

    def visit(node, path, scope, statement):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, path, scope + [child.name], statement)
                continue
            stmt = child if isinstance(child, ast.stmt) else statement
            where = f"{path.relative_to(package).as_posix()}:{'.'.join(scope) or '<module>'}"
            if isinstance(child, ast.Call) and _name(child.func) in classes:
                message = _text(child.args[0]) if child.args else ""
                sites.append(Site(where, _name(child.func), message, stmt.lineno, stmt.end_lineno))
            elif isinstance(child, ast.Raise) and _name(child.exc) in classes:  # `raise ValueError`
                sites.append(Site(where, _name(child.exc), "", child.lineno, child.end_lineno))
            visit(child, path, scope, stmt)

    for path, tree in trees.items():
        visit(tree, path, [], None)
    return sites


def _matches(entry, site) -> bool:
    where, fragment, _ = entry
    where, _, error = where.partition("#")
    return site.where == where and fragment in site.message and error in ("", site.error)


SITE_LIST = find_sites()


def test_the_scan_finds_the_error_sites():
    # A guard against a scan that silently finds nothing.
    assert len(SITE_LIST) >= 100
    assert {"ValueError", "TypeError"} <= {s.error for s in SITE_LIST}


def test_the_scan_on_a_small_package(tmp_path):
    (tmp_path / "errors.py").write_text(
        "class BadInput(ValueError):\n    pass\n\n\nclass WorseInput(BadInput):\n    pass\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "api.py").write_text(textwrap.dedent('''
        import errors

        class Thing:
            def check(self, x):
                if x < 0:
                    raise errors.WorseInput(f"`x` must be >= 0. Received: x={x}")
                def inner():
                    raise TypeError
                error = ValueError("built first, raised later")
                raise error
        try:
            pass
        except (ValueError, KeyError):
            raise RuntimeError("not a site")
        '''))
    sites = sorted(find_sites(tmp_path), key=lambda s: s.line)
    assert [(s.where, s.error, s.message, s.line) for s in sites] == [
        ("sub/api.py:Thing.check", "WorseInput", "`x` must be >= 0. Received: x={}", 7),
        ("sub/api.py:Thing.check.inner", "TypeError", "", 9),
        ("sub/api.py:Thing.check", "ValueError", "built first, raised later", 10),
    ]


def test_every_error_site_has_a_test():
    missing = [str(s) for s in SITE_LIST if not any(_matches(e, s) for e in SITES)]
    assert not missing, (
        "tfprune raises these errors without a test that checks their message; write one and "
        "add the site to SITES in tests/project/test_raise_sites.py:\n" + "\n".join(missing)
    )


def test_every_entry_names_exactly_one_site():
    bad = []
    for entry in SITES:
        found = [s for s in SITE_LIST if _matches(entry, s)]
        if len(found) != 1:
            bad.append(f"{entry[:2]} matches {len(found)} sites: {[str(s) for s in found]}")
    assert not bad, "\n".join(bad)


@functools.lru_cache(maxsize=None)
def _test_functions(path: pathlib.Path) -> set:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}


def test_every_entry_names_existing_tests():
    bad = []
    for where, fragment, tests in SITES:
        assert tests, (where, fragment)
        for test in tests:
            file, _, name = test.partition("::")
            path = TESTS / file
            if not path.is_file() or name not in _test_functions(path):
                bad.append(f"{where} {fragment!r}: no test {test}")
    assert not bad, "\n".join(bad)


def _run_traced(tests, backend, out):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFPRUNE_RAISE_SITES=str(out))
    if backend:
        env["KERAS_BACKEND"] = backend
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "tests.project._raise_tracker", "-m", "slow or not slow", "-rs",
         *[f"tests/{t}" for t in sorted(tests)]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "SKIPPED" not in proc.stdout, proc.stdout[-4000:]
    return {test.removeprefix("tests/"): hits for test, hits in json.loads(out.read_text()).items()}


@pytest.mark.slow
def test_the_listed_tests_raise_their_sites(tmp_path):
    groups = {}
    for _, _, tests in SITES:
        for test in tests:
            backend = BACKEND_TESTS[1] if test.startswith(BACKEND_TESTS[0]) else None
            groups.setdefault(backend, set()).add(test)
    hits = {}
    for i, (backend, tests) in enumerate(sorted(groups.items(), key=lambda kv: kv[0] or "")):
        hits.update(_run_traced(tests, backend, tmp_path / f"hits{i}.json"))
    bad = []
    for entry in SITES:
        (site,) = [s for s in SITE_LIST if _matches(entry, s)]
        file = f"tfprune/{site.where.split(':')[0]}"
        raised = any(
            path == file and site.line <= line <= site.end_line
            for test in entry[2]
            for path, line in hits.get(test, [])
        )
        if not raised:
            bad.append(f"{site}: not raised by {entry[2]}")
    assert not bad, "\n".join(bad)
