"""Confidence intervals: Wilson for proportions, ``scipy.stats.bootstrap`` for the rest.

- :func:`wilson_interval`: one proportion (``scipy.stats.binomtest``).
- :func:`worst_of_wilson`: the smallest of several proportions, with a Bonferroni-adjusted
  simultaneous Wilson interval, so that picking the minimum does not make it optimistic.
- :func:`bootstrap_interval`: BCa up to :data:`BCA_MAX_N` samples (its jackknife costs n
  statistic calls), percentile above; optionally stratified (each stratum resampled within
  itself, as scipy does for several independent samples), so a metric that needs every class
  present (AUC, balanced accuracy) is defined on every resample. A resample where the metric
  is still undefined is never dropped: the interval is then reported as not estimable.
- :func:`resample_weights`: turns resampled index arrays into per-sample counts, the form in
  which vectorised statistics (weighted sums, one matrix product per batch) are cheap.

Public names: MIN_RESAMPLES, MIN_STRATUM, BCA_MAX_N, BootstrapInterval, wilson_interval,
worst_of_wilson, bootstrap_interval, resample_weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy.stats import binomtest, bootstrap

MIN_RESAMPLES = 100
# Fewest samples in a stratum (or in all, unstratified) for a bootstrap to mean anything:
# resamples of 2 or 3 samples take a handful of values, and the interval comes out narrow.
MIN_STRATUM = 5
BCA_MAX_N = 2000
# Resampled index arrays handed to a vectorised statistic at once: batch * n <= this.
_BATCH_ELEMENTS = 2_000_000


class BootstrapInterval(NamedTuple):
    """``(low, high)`` plus how it was obtained; ``note`` says why it is NaN or degenerate."""

    low: float
    high: float
    method: str
    note: str = ""

    @property
    def ci(self) -> tuple[float, float]:
        return (self.low, self.high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n`` (``scipy.stats.binomtest``); NaNs when n = 0.

    >>> tuple(round(v, 4) for v in wilson_interval(90, 100))
    (0.8256, 0.9448)
    """
    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def worst_of_wilson(
    successes: Sequence[int], totals: Sequence[int], confidence: float = 0.95
) -> tuple[int, tuple[float, float]]:
    """Index of the smallest proportion and a simultaneous interval for the smallest true one.

    Each of the K proportions (n > 0) gets a Wilson interval at level 1 - (1 - confidence) / K
    (Bonferroni); all K hold together with probability >= ``confidence``, and then the true
    minimum lies in [min of the lows, min of the highs]. A Wilson interval of only the class
    that came out worst would be optimistic: that class was picked for being low.

    >>> worst_of_wilson([9, 5], [10, 10])[0]
    1
    """
    k = np.asarray(successes, dtype=np.int64)
    n = np.asarray(totals, dtype=np.int64)
    present = np.flatnonzero(n > 0)
    if len(present) == 0:
        return -1, (math.nan, math.nan)
    level = 1 - (1 - confidence) / len(present)
    cis = np.array([wilson_interval(k[i], n[i], level) for i in present])
    worst = int(present[np.argmin(k[present] / n[present])])
    return worst, (float(cis[:, 0].min()), float(cis[:, 1].min()))


def resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """(..., m) resampled indices into [0, n) -> (..., n) float counts of each sample.

    >>> resample_weights(np.array([[0, 0, 2]]), 3).tolist()
    [[2.0, 0.0, 1.0]]
    """
    flat = indices.reshape(-1, indices.shape[-1])
    offsets = (np.arange(len(flat)) * n)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=len(flat) * n)
    return counts.reshape(*indices.shape[:-1], n).astype(np.float64)


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | np.ndarray],
    n: int,
    *,
    resamples: int,
    seed: int,
    confidence: float = 0.95,
    strata: np.ndarray | None = None,
    stratum_names: Mapping[int, str] | None = None,
    vectorized: bool = False,
) -> BootstrapInterval:
    """Bootstrap interval of ``statistic(indices)`` over ``n`` samples drawn with replacement.

    Args:
        statistic: maps sample indices to the metric. With ``vectorized``, it takes a
            (B, m) array (one resample per row) and returns (B,); otherwise a (m,) array.
        strata: (n,) stratum of every sample (e.g. the label): each stratum is resampled
            within itself, keeping its size; each needs :data:`MIN_STRATUM` samples.
        stratum_names: how messages name a stratum (e.g. "class 'Sandal'").

    Returns:
        BCa for n <= :data:`BCA_MAX_N`, percentile above. NaN, with a note, when any resample
        gives an undefined (non-finite) value; ``low == high``, with a note, when every
        resample gives the same value (a degenerate interval, not evidence of certainty).
    """
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"Expected resamples >= {MIN_RESAMPLES}, but got resamples={resamples}")
    kind = "BCa" if n <= BCA_MAX_N else "percentile"
    method = f"{'stratified-' if strata is not None else ''}bootstrap-{kind}({resamples})"
    if n == 0:
        return BootstrapInterval(math.nan, math.nan, method, "no samples")
    codes = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)
    kinds, sizes = np.unique(codes, return_counts=True)
    if sizes.min() < MIN_STRATUM:
        smallest = kinds[np.argmin(sizes)]
        where = "" if strata is None else f" in {(stratum_names or {}).get(smallest, smallest)}"
        note = f"too few samples to bootstrap: {sizes.min()}{where} (at least {MIN_STRATUM})"
        return BootstrapInterval(math.nan, math.nan, method, note)
    groups = [np.flatnonzero(codes == k) for k in kinds]

    def joined(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(statistic(np.concatenate(samples, axis=-1)), dtype=np.float64)

    with warnings.catch_warnings():  # degenerate or undefined resamples are reported below
        warnings.simplefilter("ignore")
        res = bootstrap(
            tuple(groups),
            joined,
            n_resamples=resamples,
            batch=max(1, _BATCH_ELEMENTS // n) if vectorized else None,
            vectorized=vectorized,
            confidence_level=confidence,
            method=kind,
            rng=np.random.default_rng(seed),
        )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    undefined = int((~np.isfinite(dist)).sum())
    if undefined:
        note = f"undefined in {undefined} of {resamples} resamples, so no interval"
        return BootstrapInterval(math.nan, math.nan, method, note)
    if np.ptp(dist) == 0:
        note = f"degenerate interval [{dist[0]:.4g}, {dist[0]:.4g}]: every resample gave it"
        return BootstrapInterval(float(dist[0]), float(dist[0]), method, note)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa's jackknife was undefined
        alpha = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(dist, [alpha, 1 - alpha]))
        method = method.replace("BCa", "percentile")
    return BootstrapInterval(low, high, method)
