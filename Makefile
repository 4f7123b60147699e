# Set-up and everyday commands. Everything runs in a local virtual
# environment (.venv) that the first command creates.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What the JAX pass of `make test` runs (the TensorFlow pass runs everything):
# the backend tests, the in-step update against the update between steps and
# with QualityGuard's freeze and restore, one-shot pruning (the solver against its reference,
# exact counts, keras_hub GPT-2, the tiny Shakespeare GPT, the layer views,
# sequential calibration, fine-tuning and export), two of tfmot's guide
# programs (tests/compat), the README quickstart, the doc examples written for
# JAX, and the training examples' quick runs (llm_oneshot's runs in the
# TensorFlow pass only).
JAX_TESTS ?= tests/backends tests/project/test_backend_seam.py tests/training/test_in_step.py \
	tests/training/test_quality_guard.py \
	tests/training/test_strategy_integration.py::test_quality_guard_freezes_pruning_and_restores_the_last_good_masks \
	tests/masks/test_mask_math.py::test_a_mask_that_cannot_change_is_kept_as_it_is \
	tests/oneshot/test_oneshot_math.py::test_sparsegpt_matches_the_papers_algorithm \
	tests/oneshot/test_oneshot_math.py::test_layer_wise_error_sparsegpt_below_wanda_below_magnitude \
	tests/oneshot/test_oneshot_math.py::test_exact_counts_per_block_and_gate \
	tests/oneshot/test_oneshot_math.py::test_nm_exact_in_every_group_with_a_partial_last_group \
	tests/oneshot/test_oneshot_math.py::test_dead_inputs_and_a_singular_hessian \
	tests/oneshot/test_oneshot_keras_hub.py \
	tests/oneshot/test_views_and_program.py::test_rows_times_the_matrix_is_the_layer \
	tests/oneshot/test_views_and_program.py::test_recurrent_kernels_see_the_input_and_the_previous_state \
	tests/oneshot/test_views_and_program.py::test_the_program_computes_what_the_model_does \
	tests/oneshot/test_prune_oneshot.py::test_a_wrapped_copy_whose_masks_fine_tuning_keeps \
	tests/oneshot/test_prune_oneshot.py::test_sequential_calibration_reads_the_pruned_earlier_blocks \
	tests/oneshot/test_prune_oneshot.py::test_saved_and_reloaded_with_masks_and_exported \
	tests/oneshot/test_char_gpt_oneshot.py \
	tests/compat/test_tfmot_programs.py::test_pruning_with_keras_guide \
	tests/compat/test_tfmot_programs.py::test_comprehensive_guide_programs \
	tests/compat/test_tfmot_api.py::test_polynomial_decay_steps_and_values_are_tfmots \
	tests/project/test_docs.py::test_readme_quickstart_runs \
	tests/project/test_doc_examples.py \
	tests/project/test_examples.py::test_house_prices_quick \
	tests/project/test_examples.py::test_air_quality_lstm_quick \
	tests/project/test_examples.py::test_digits_dense_quick

# Worker processes of the TensorFlow pass (pytest-xdist); 0 runs it in one.
PYTEST_WORKERS ?= 2

.PHONY: install test test-all test-models test-torch test-keras-range demo docs bench bench-quick bench-env clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# pytest exits 5 when it collects no test: not a failure of the code.
# Two passes, each in $(PYTEST_WORKERS) worker processes: TensorFlow (the
# default backend), then the JAX cases.
test: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests"; status=0; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -n $(PYTEST_WORKERS) $(JAX_TESTS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no JAX tests"; exit 0; fi; exit $$status

# Everything, the cases marked slow included.
test-all: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -m "slow or not slow" $(PYTEST_ARGS)

# The model matrices: every keras.applications family and keras_hub
# backbones, end to end (tests/models, slow cases included; keras_hub comes
# from the `models` extra).
MODELS_STAMP := $(VENV)/.installed-models
$(MODELS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[dev,models]"
	touch $@

# One process per case: a single process holding every model grew past
# 20 GB. Every case runs; the target fails if any did.
test-models: $(MODELS_STAMP)
	@ids=$$(TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest tests/models -m "slow or not slow" \
		--collect-only -q $(PYTEST_ARGS) | grep '::'); status=0; \
	for id in $$ids; do \
		TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest "$$id" -m "slow or not slow" -q -rxX $(PYTEST_ARGS) \
			|| status=1; \
	done; exit $$status

# The PyTorch backend (not in CI: torch's wheel brings GBs of CUDA
# libraries): a third environment, .venv-torch, and the core tests with
# KERAS_BACKEND=torch. docs/distributed.md lists what runs there.
TORCH_VENV ?= .venv-torch
TORCH_TESTS ?= tests/training tests/strategies tests/masks tests/analysis tests/shrink tests/oneshot \
	tests/compat
$(TORCH_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/python -m pip install --quiet -e ".[dev]" torch
	touch $@

test-torch: $(TORCH_VENV)/.installed
	KERAS_BACKEND=torch TF_CPP_MIN_LOG_LEVEL=3 $(TORCH_VENV)/bin/python -m pytest $(TORCH_TESTS) $(PYTEST_ARGS)

# The oldest Keras of the range setup.cfg pins, put in front of the
# installed one: the internals tfprune relies on (tests/project/
# test_keras_internals.py), the backend seam and the training callback.
KERAS_OLDEST ?= 3.12.0
KERAS_OLDEST_DIR ?= .keras-$(KERAS_OLDEST)
test-keras-range: $(STAMP)
	test -d $(KERAS_OLDEST_DIR) || $(PY) -m pip install --quiet --no-deps --target $(KERAS_OLDEST_DIR) keras==$(KERAS_OLDEST)
	PYTHONPATH=$(KERAS_OLDEST_DIR) TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -n $(PYTEST_WORKERS) \
		tests/project/test_keras_internals.py tests/project/test_backend_seam.py \
		tests/training/test_callback.py tests/training/test_subclassed.py \
		tests/training/test_graph_models.py $(PYTEST_ARGS)

demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) examples/house_prices.py

# A second environment with tfmot 0.8.1 on legacy tf_keras, for the
# side-by-side examples and benchmarks (never imported by tfprune itself).
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet "tensorflow==2.21.*" "tf-keras==2.21.0" \
		"tensorflow-model-optimization==0.8.1" numpy scikit-learn
	touch $@

bench-env: $(BENCH_VENV)/.installed

# Side-by-side benchmarks; rewrite docs/BENCHMARKS.md (BENCH_ARGS=--skip-100m ...).
bench: $(STAMP) $(BENCH_VENV)/.installed
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: $(STAMP) $(BENCH_VENV)/.installed
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m benchmarks --quick $(BENCH_ARGS)

# Regenerate the API reference from the docstrings (a test checks it is current).
docs: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) tools/gen_api_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
