"""Percentile bootstrap stratified by group: every resample keeps each group's size.

Subgroup statistics (an accuracy gap between groups, a fairness difference) are compared
across groups of fixed, known sizes; resampling the whole set would let a small group shrink
or vanish and widen the interval with noise that is not in the data. Each group is resampled
with replacement within itself (as ``scipy.stats.bootstrap`` does per sample, one sample per
group), and one statistic call may return several values, so all metrics of one attribute
share the same resamples.

It sits beside :func:`vcheck.functional.intervals.bootstrap_interval` (same seed and NaN
rules: resamples where a value is undefined are dropped, and too few finite ones give NaN),
so that the interval methods can later move to one implementation.

Public names: stratified_bootstrap_interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def stratified_bootstrap_interval(
    statistic: Callable[[np.ndarray], float | np.ndarray],
    strata: np.ndarray,
    *,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``statistic(indices)`` under resampling within each stratum.

    Args:
        statistic: maps (N,) sample indices to a value or a (M,) array of values.
        strata: (N,) group code of every sample.

    Returns:
        ``(low, high)``, each shaped like the statistic's value; NaN where fewer than
        ``max(10, resamples // 2)`` resamples gave a finite value.

    >>> strata = np.repeat([0, 1], 50)
    >>> x = np.r_[np.zeros(50), np.ones(50)]
    >>> low, high = stratified_bootstrap_interval(lambda i: x[i].mean(), strata, resamples=50,
    ...                                           seed=0)
    >>> float(low), float(high)  # group sizes are fixed, so the mean cannot move
    (0.5, 0.5)
    """
    strata = np.asarray(strata)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    rng = np.random.default_rng(seed)
    values, scalar = [], True
    for _ in range(resamples):
        parts = [m[rng.integers(0, len(m), size=len(m))] for m in members]
        idx = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        value = np.asarray(statistic(idx), dtype=np.float64)
        scalar = value.ndim == 0
        values.append(np.atleast_1d(value))
    table = np.stack(values)
    alpha = (1 - confidence) / 2
    low = np.full(table.shape[1], np.nan)
    high = np.full(table.shape[1], np.nan)
    for j in range(table.shape[1]):
        column = table[:, j][np.isfinite(table[:, j])]
        if len(column) >= max(10, resamples // 2):
            low[j], high[j] = np.quantile(column, [alpha, 1 - alpha])
    if scalar:
        return low[0], high[0]
    return low, high
