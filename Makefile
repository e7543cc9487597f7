# The two commands of the README: `make run` (the suites on the default model) and
# `make test` (vcheck's own tests). Both set up what they need through scripts/setup.sh.
PY := .venv/bin/python
PYTEST_ARGS ?=
# vcheck's own tests run in two pytest-xdist workers (the machines here have 2 cores; the
# caches they share lock per entry). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2

.PHONY: setup run test lint zoo soundness-benchmark bench bench-soundness bench-fairness bench-patch bench-multilabel clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m pytest suites/ $(PYTEST_ARGS)

# Tests that train or optimise run a second time under the scalar CPU kernels (no vector
# unit), so a test that depends on one CPU's floating-point path fails here, not on a user's
# first run. The first pass uses the machine's own kernels (AVX2 or AVX-512). The slow
# end-to-end runs are left out of the second pass: the unit tests below them train the same.
SCALAR_CPU := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41

test: setup lint
	$(PY) -m pytest tests/ -n $(TEST_WORKERS) $(PYTEST_ARGS)
	$(SCALAR_CPU) $(PY) -m pytest tests/ -n $(TEST_WORKERS) -m "trains and not slow" $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

# Retrain the bundled Fashion-MNIST zoo (deterministic; about 40 minutes on 2 busy cores).
zoo: setup
	$(PY) -m vcheck.models.train_zoo

# Regenerate fixtures/soundness (deterministic; about 12 minutes on 2 busy cores).
soundness-benchmark: setup
	$(PY) -m vcheck.soundness.make_benchmark

bench: setup
	$(PY) benchmarks/bench_predictions.py
	$(PY) benchmarks/bench_imagenet.py
	$(PY) benchmarks/bench_report.py
	$(PY) benchmarks/bench_intervals.py
	$(PY) benchmarks/bench_adversarial.py
	$(PY) benchmarks/bench_default_run.py

# The README's soundness tables: manifests plus every built-in verifier (about 5 minutes).
bench-soundness: setup
	$(PY) benchmarks/soundness_table.py

# What the fairness suite adds to a cold and a warm default run (a few minutes).
bench-fairness: setup
	$(PY) benchmarks/bench_fairness.py

# The patch suite's share of a cold default run, and a warm rerun (about 2 minutes idle).
bench-patch: setup
	$(PY) benchmarks/bench_patch.py

# The multi-label suite's share of a cold default run, side by side (about 5 minutes).
bench-multilabel: setup
	$(PY) benchmarks/bench_multilabel.py

clean:
	rm -rf reports .pytest_cache
