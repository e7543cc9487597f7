# The two commands of the README: `make run` (the suites on the default model) and
# `make test` (vcheck's own tests). Both set up what they need through scripts/setup.sh.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup run test lint zoo bench clean

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

bench: setup
	$(PY) benchmarks/bench_predictions.py

clean:
	rm -rf reports .pytest_cache
