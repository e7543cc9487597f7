"""Helpers for tests that run the real suites as a user would (shared by the plugin tests).

Runs that load a model go through a subprocess (``python -m pytest``); runs that must stop
with a usage error before anything is loaded run in-process (faster, no torch import).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
ACCURACY = SUITES / "test_accuracy.py"


def run_suites(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    """Run the real suites in a fresh interpreter, with pytester's cwd as the project."""
    return pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=600)


def run_to_usage_error(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    """Run in-process a command line that must stop before any model or data is loaded."""
    return pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines if line.strip()]


def assert_usage_error(result: pytest.RunResult, pytester: pytest.Pytester, *needles: str) -> str:
    """Exit 4 before any test, with one error line that contains every needle."""
    __tracebackhide__ = True
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    lines = error_lines(result)
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("ERROR: vcheck: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not re.search(r"\d+ (passed|failed|skipped|errors?)\b", result.stdout.str())
    assert not (pytester.path / "reports").exists()  # nothing ran, so nothing was reported
    return line


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
