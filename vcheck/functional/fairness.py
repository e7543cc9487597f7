"""Subgroup metrics from per-group counts: accuracy by group, its gap, ratio and worst group,
and the five fairness metrics of the empirical study (SPD, DEO, EOD, AAOD, AED).

Definitions (fairlearn's, "between_groups": the largest minus the smallest group value):

- SPD, statistical parity difference: of the selection rate P(pred = c)
  (``fairlearn.metrics.demographic_parity_difference``);
- EOD, equal opportunity difference: of the true positive rate
  (``equal_opportunity_difference``);
- DEO, difference in equalized odds: max(TPR difference, FPR difference)
  (``equalized_odds_difference(agg="worst_case")``);
- AAOD, average absolute odds difference: (TPR difference + FPR difference) / 2
  (``equalized_odds_difference(agg="mean")``);
- AED, accuracy equality difference: of the error rate of the binarised task
  (``zero_one_loss_difference``).

Multi-class predictions are binarised one-vs-rest for each class in ``classes`` and the
per-class values averaged (unweighted). Where fairlearn and this module differ, it is on
purpose: a group with no positives of a class has no true positive rate, and fairlearn scores
it 0 (its ``zero_division`` default), which reports a gap that only says the group lacks that
class. Here such a group is left out of that class's TPR difference (likewise for the FPR of a
group with no negatives), and so is a rate over fewer than ``min_samples`` samples (one sneaker
among 3,558 bright images decides nothing); a class with fewer than two groups where a rate
counts drops out of the mean, and :func:`fairness_metrics` counts what was left out. On the
rows that count, the values equal fairlearn's (``tests/test_fairness_functional.py`` checks
each one on random and hand-built cases).

fairlearn is the reference rather than the engine because its ``MetricFrame`` costs about
0.1-0.2 s per metric and class on 2 cores: the five metrics over ten classes, several
attributes and a few hundred bootstrap resamples would take minutes; these counts take
milliseconds.

Public names: GroupCounts, group_counts, between_groups, fairness_metrics, FAIRNESS_METRICS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FAIRNESS_METRICS = ("spd", "deo", "eod", "aaod", "aed")


@dataclass(frozen=True)
class GroupCounts:
    """Confusion counts per group (G groups) and binarised class (K classes).

    Attributes:
        n: (G,) samples per group.
        correct: (G,) samples whose (multi-class) prediction is right.
        positives: (G, K) samples whose label is the class.
        predicted: (G, K) samples predicted as the class.
        true_positives: (G, K) samples both labelled and predicted as the class.
    """

    n: np.ndarray
    correct: np.ndarray
    positives: np.ndarray
    predicted: np.ndarray
    true_positives: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """(G,) top-1 accuracy of each group (NaN for an empty group)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.correct / self.n


def group_counts(
    labels: np.ndarray,
    preds: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    classes: np.ndarray,
) -> GroupCounts:
    """Count, per group, correct predictions and the one-vs-rest confusion of each class.

    Args:
        labels, preds: (N,) class indices.
        groups: (N,) group codes in ``[0, n_groups)``.
        classes: (K,) class indices to binarise (one-vs-rest).

    >>> c = group_counts(np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([0, 0, 1]), 2,
    ...                  np.array([1]))
    >>> c.accuracy.tolist(), c.positives.tolist(), c.true_positives.tolist()
    ([1.0, 0.0], [[1], [1]], [[1], [0]])
    """
    labels, preds, groups = (np.asarray(a, dtype=np.int64) for a in (labels, preds, groups))
    classes = np.asarray(classes, dtype=np.int64)
    num = int(max(labels.max(initial=0), preds.max(initial=0), classes.max(initial=0))) + 1
    column = np.full(num, -1, dtype=np.int64)
    column[classes] = np.arange(len(classes))  # class index -> position among ``classes``
    k = len(classes)
    right = labels == preds

    def per_group_class(cls: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        col = column[cls]
        keep = col >= 0
        flat = groups[keep] * k + col[keep]
        w = None if weights is None else weights[keep]
        return np.bincount(flat, weights=w, minlength=n_groups * k).reshape(n_groups, k)

    return GroupCounts(
        n=np.bincount(groups, minlength=n_groups).astype(np.float64),
        correct=np.bincount(groups, weights=right, minlength=n_groups),
        positives=per_group_class(labels).astype(np.float64),
        predicted=per_group_class(preds).astype(np.float64),
        true_positives=per_group_class(labels, right.astype(np.float64)),
    )


def between_groups(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Largest minus smallest value over the groups (axis 0) where ``defined``; NaN where
    fewer than two groups are defined.

    >>> between_groups(np.array([[0.2, 0.5], [0.6, 0.0]]), np.array([[1, 1], [1, 0]], bool))
    array([0.4, nan])
    """
    hi = np.where(defined, values, -np.inf).max(axis=0, initial=-np.inf)
    lo = np.where(defined, values, np.inf).min(axis=0, initial=np.inf)
    return np.where(defined.sum(axis=0) >= 2, hi - lo, np.nan)


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def fairness_metrics(counts: GroupCounts, min_samples: int = 1) -> dict[str, float]:
    """SPD, DEO, EOD, AAOD and AED (one-vs-rest mean over the classes of ``counts``).

    A group's true positive rate for a class counts only when the group has at least
    ``min_samples`` positives of it (its false positive rate: ``min_samples`` negatives); with
    the default 1 that is exactly "where the rate is defined". Also returns ``left_out_tpr``
    and ``left_out_fpr``: how many (group, class) pairs were left out that way.
    """
    n = counts.n[:, None]
    pos, pred, tp = counts.positives, counts.predicted, counts.true_positives
    neg = n - pos
    fp = pred - tp
    nonempty = np.broadcast_to(n > 0, pos.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = pred / n
        tpr = tp / pos
        fpr = fp / neg
        error = (fp + pos - tp) / n
    spd = between_groups(selection, nonempty)
    tpr_ok = nonempty & (pos >= max(min_samples, 1))
    fpr_ok = nonempty & (neg >= max(min_samples, 1))
    tpr_diff = between_groups(tpr, tpr_ok)
    fpr_diff = between_groups(fpr, fpr_ok)
    # Where only one of the two differences is defined, DEO and AAOD take that one.
    deo = np.fmax(tpr_diff, fpr_diff)
    aaod = np.where(
        np.isnan(tpr_diff),
        fpr_diff,
        np.where(np.isnan(fpr_diff), tpr_diff, (tpr_diff + fpr_diff) / 2),
    )
    aed = between_groups(error, nonempty)
    return {
        "spd": _nanmean(spd),
        "deo": _nanmean(deo),
        "eod": _nanmean(tpr_diff),
        "aaod": _nanmean(aaod),
        "aed": _nanmean(aed),
        "left_out_tpr": int((nonempty & ~tpr_ok).sum()),
        "left_out_fpr": int((nonempty & ~fpr_ok).sum()),
    }
