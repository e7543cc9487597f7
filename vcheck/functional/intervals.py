"""Confidence intervals: Wilson for proportions (scipy), percentile bootstrap for the rest."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import binomtest


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (``scipy.stats.binomtest``); NaNs when n = 0.

    >>> tuple(round(v, 4) for v in wilson_interval(90, 100))
    (0.8256, 0.9448)
    """
    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` samples drawn with replacement.

    Written here rather than with ``scipy.stats.bootstrap`` because a resample of a small eval
    set can miss a class, making AUC or balanced accuracy undefined for it; such resamples
    (NaN) are dropped instead of turning the whole interval into NaN.
    """
    if n == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)])
    values = values[np.isfinite(values)]
    if len(values) < max(10, resamples // 2):
        return (math.nan, math.nan)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return (float(low), float(high))
