# The two commands of the README: `make run` (the suites on the default model) and
# `make test` (vcheck's own tests). Both set up what they need through scripts/setup.sh.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup run test lint zoo soundness-benchmark bench bench-soundness bench-multilabel clean

setup:
	@bash scripts/setup.sh

run: setup
	$(PY) -m pytest suites/ $(PYTEST_ARGS)

test: setup lint
	$(PY) -m pytest tests/ $(PYTEST_ARGS)

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

# The README's soundness tables: manifests plus every built-in verifier (about 5 minutes).
bench-soundness: setup
	$(PY) benchmarks/soundness_table.py

# The multi-label suite's share of a cold default run, side by side (about 5 minutes).
bench-multilabel: setup
	$(PY) benchmarks/bench_multilabel.py

clean:
	rm -rf reports .pytest_cache
