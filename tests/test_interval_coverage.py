"""Coverage simulations: over many seeded synthetic eval sets with a known true value, each
interval of the accuracy suite holds the truth about as often as its nominal level says.

Monte-Carlo error: with D draws the empirical coverage has a standard error of
sqrt(0.95 * 0.05 / D), so the tolerance is three of those (at least 3 points). The
Bonferroni interval of the worst class is conservative by design: only its lower side is held.
ECE is not promised coverage (biased upward at small n); benchmarks/bench_intervals.py prints
its figures beside the others.
"""

from __future__ import annotations

import math

import pytest

from tests._coverage import SCENARIOS, coverage

NOMINAL = 0.95
PROMISED = [name for name, s in SCENARIOS.items() if s.promised]
FAST = ["top1", "worst_class_recall", "balanced_accuracy", "nll"]
# (n, draws): the draws shrink as each draw gets dearer, and the tolerance grows with them
# (at 20 draws it only catches a gross miss); the benchmark prints the finer figures.
SIZES = {50: 200, 200: 100, 1000: 50, 10_000: 20}


def _cases():
    for n, draws in SIZES.items():
        for name in PROMISED:
            slow = n > 50 or name not in FAST
            marks = [pytest.mark.slow] if slow else []
            yield pytest.param(name, n, draws, marks=marks, id=f"{name}-{n}")


@pytest.mark.parametrize(("name", "n", "draws"), list(_cases()))
def test_interval_covers_the_truth_at_its_nominal_level(name: str, n: int, draws: int) -> None:
    tolerance = max(0.03, 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / draws))
    empirical = coverage(name, n, draws, confidence=NOMINAL)
    assert empirical >= NOMINAL - tolerance, (name, n, empirical)
    if name != "worst_class_recall":
        assert empirical <= NOMINAL + tolerance, (name, n, empirical)


def test_a_lower_confidence_gives_lower_coverage():
    assert coverage("nll", 50, 200, confidence=0.8) < coverage("nll", 50, 200, confidence=0.95)


def test_calibrated_ece_is_biased_away_from_its_true_zero():
    # The documented caveat: the estimate of a perfectly calibrated model's ECE is positive.
    assert coverage("ece (calibrated)", 50, 20) < 0.5
