"""The product's suites: activate vcheck before collection, so a bad --model, profile or data
path stops the run with a usage error (exit 4) before any test."""

import pytest

from vcheck.plugin import activate


def pytest_configure(config: pytest.Config) -> None:
    activate(config)
