"""Percentile bootstrap stratified by group: every resample keeps each group's size.

Subgroup statistics (an accuracy gap between groups, a fairness difference) are compared
across groups of fixed, known sizes; resampling the whole set would let a small group shrink
or vanish and widen the interval with noise that is not in the data. Each group is resampled
with replacement within itself (as ``scipy.stats.bootstrap`` does per sample, one sample per
group), and one statistic call may return several values, so all metrics of one attribute
share the same resamples.

It sits beside :func:`vcheck.functional.intervals.bootstrap_interval` with the same rule for
undefined values: a resample where a value is undefined is counted, never dropped (dropping
it would narrow the interval), and that value then has no interval.

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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval of ``statistic(indices)`` under resampling within each stratum.

    Args:
        statistic: maps (N,) sample indices to a value or a (M,) array of values.
        strata: (N,) group code of every sample.

    Returns:
        ``(low, high, undefined)``, each shaped like the statistic's value: the interval, NaN
        where any resample gave a non-finite value, and how many resamples did.

    >>> strata = np.repeat([0, 1], 50)
    >>> x = np.r_[np.zeros(50), np.ones(50)]
    >>> low, high, _ = stratified_bootstrap_interval(lambda i: x[i].mean(), strata,
    ...                                              resamples=50, seed=0)
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
    undefined = (~np.isfinite(table)).sum(axis=0)
    low, high = np.quantile(np.where(undefined > 0, np.nan, table), [alpha, 1 - alpha], axis=0)
    if scalar:
        return low[0], high[0], undefined[0]
    return low, high, undefined
