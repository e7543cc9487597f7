"""Hooks other plugins (and the benchmarks) can implement to follow a vcheck run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vcheck.checks import CheckResult
    from vcheck.models.base import ModelUnderTest


@pytest.hookspec
def pytest_vcheck_model_loaded(model: ModelUnderTest) -> None:
    """Called once the model under test is loaded, before any forward pass.

    Example: count forward passes by registering a forward pre-hook on ``model.module``.
    """


@pytest.hookspec
def pytest_vcheck_check_recorded(result: CheckResult) -> None:
    """Called for every check a suite records, pass or fail."""
