"""Pure multi-label metrics on numpy arrays (no pytest, no torch).

Shapes: ``scores`` (N, C) (logits or probabilities: only their order matters, except for
thresholded metrics), ``member`` (N, C) bool: is class c in image n's label set.

Single-label models judged against label sets:

- :func:`topk_in_set`: ReaL top-k, correct when any of the k highest scores is in the set;
- :func:`variable_topk`: Anzaku et al.'s k = |set|, as set match (every label in the top k)
  and as fraction recovered (|set ∩ top-k| / k);
- :func:`class_averaged`: the mean over classes of per-class means (Shankar et al.'s
  definition (a) averages accuracy per original class).

Multi-label (sigmoid) models, through scikit-learn: :func:`per_class_auc`,
:func:`per_class_average_precision`, :func:`f1`, :func:`subset_accuracy`, :func:`hamming`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    hamming_loss,
    roc_auc_score,
)


def membership(sets: Sequence[Iterable[int]], num_classes: int) -> np.ndarray:
    """(N, C) bool multi-hot matrix of label sets.

    >>> membership([[0, 2], []], 3).astype(int).tolist()
    [[1, 0, 1], [0, 0, 0]]
    """
    out = np.zeros((len(sets), num_classes), dtype=bool)
    for row, labels in enumerate(sets):
        out[row, list(labels)] = True
    return out


def _ranking(scores: np.ndarray) -> np.ndarray:
    """(N, C) class indices by decreasing score; ties break toward the lower index."""
    return np.argsort(-scores, axis=1, kind="stable")


def topk_in_set(scores: np.ndarray, member: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: is any of the ``k`` highest-scoring classes in the image's label set?

    >>> topk_in_set(np.array([[0.1, 0.7, 0.2]]), np.array([[True, False, True]]), 1).tolist()
    [False]
    """
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"Expected k in [1, {scores.shape[1]}], but got k={k}")
    top = _ranking(scores)[:, :k]
    return np.take_along_axis(member, top, axis=1).any(axis=1)


def variable_topk(scores: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k with k = the size of each image's label set (images with an empty set: NaN).

    Returns:
        ``(set_match, recovered)``: (N,) bool, every label is among the top k; and (N,)
        float, the fraction |labels ∩ top-k| / k.

    >>> m, r = variable_topk(np.array([[0.5, 0.3, 0.2]]), np.array([[True, False, True]]))
    >>> m.tolist(), r.tolist()
    ([False], [0.5])
    """
    k = member.sum(axis=1)
    ranks = np.empty_like(scores, dtype=np.int64)
    np.put_along_axis(ranks, _ranking(scores), np.arange(scores.shape[1])[None, :], axis=1)
    hits = (member & (ranks < k[:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recovered = np.where(k > 0, hits / np.maximum(k, 1), np.nan)
    return (hits == k) & (k > 0), recovered


def class_averaged(values: np.ndarray, groups: np.ndarray) -> float:
    """Mean over the groups present of the mean of ``values`` in each group; NaN if empty.

    >>> class_averaged(np.array([1.0, 0.0, 1.0]), np.array([0, 0, 1]))
    0.75
    """
    if len(values) == 0:
        return math.nan
    present, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values.astype(float), minlength=len(present))
    counts = np.bincount(inverse, minlength=len(present))
    return float(np.mean(sums / counts))


# -- multi-label (sigmoid) models -----------------------------------------------------------------


def _defined(targets: np.ndarray) -> np.ndarray:
    """(C,) bool: classes with at least one positive and one negative image."""
    positives = targets.sum(axis=0)
    return (positives > 0) & (positives < len(targets))


def per_class_auc(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C,) ROC AUC of each class (scikit-learn); NaN where a class has no positive or no
    negative image."""
    out = np.full(targets.shape[1], np.nan)
    for c in np.flatnonzero(_defined(targets)):
        out[c] = roc_auc_score(targets[:, c], scores[:, c])
    return out


def per_class_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(C,) average precision of each class (scikit-learn); NaN where a class has no positive
    image."""
    out = np.full(targets.shape[1], np.nan)
    for c in np.flatnonzero(targets.sum(axis=0) > 0):
        out[c] = average_precision_score(targets[:, c], scores[:, c])
    return out


def nan_mean(values: np.ndarray) -> float:
    """Mean of the finite values; NaN when there are none (macro AUC, mAP)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def f1(probs: np.ndarray, targets: np.ndarray, threshold: float, average: str) -> float:
    """F1 of ``probs >= threshold`` against ``targets``, ``average`` "micro" or "macro"
    (scikit-learn; a class never predicted nor present scores 0 under "macro")."""
    return float(f1_score(targets, probs >= threshold, average=average, zero_division=0))


def subset_accuracy(probs: np.ndarray, targets: np.ndarray, threshold: float) -> np.ndarray:
    """(N,) bool: the thresholded prediction equals the label set exactly (per image, so
    that it gets a Wilson interval; its mean is scikit-learn's ``accuracy_score``)."""
    return ((probs >= threshold) == targets).all(axis=1)


def hamming(probs: np.ndarray, targets: np.ndarray, threshold: float) -> float:
    """Fraction of (image, class) decisions that are wrong (scikit-learn's Hamming loss)."""
    return float(hamming_loss(targets, probs >= threshold))


# -- the same metrics with per-image weights: one bootstrap resample per row ----------------------
# ``weights`` (B, N) counts how often each image is drawn (vcheck.functional.intervals.
# resample_weights); integer weights give exactly the metric of the repeated images, so the
# bootstrap runs as array operations instead of one scikit-learn call per resample.


def weighted_confusion(
    weights: np.ndarray, probs: np.ndarray, targets: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B, C) weighted true positives, false positives and false negatives per class."""
    pred = probs >= threshold
    tp = weights @ (pred & targets).astype(np.float64)
    fp = weights @ (pred & ~targets).astype(np.float64)
    fn = weights @ (~pred & targets).astype(np.float64)
    return tp, fp, fn


def weighted_f1(
    weights: np.ndarray, probs: np.ndarray, targets: np.ndarray, threshold: float, average: str
) -> np.ndarray:
    """(B,) :func:`f1` of each weighting (0 where nothing is predicted nor present)."""
    tp, fp, fn = weighted_confusion(weights, probs, targets, threshold)
    if average == "micro":
        tp, fp, fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    denominator = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(denominator > 0, 2 * tp / denominator, 0.0)
    return score if average == "micro" else score.mean(-1)


def weighted_hamming(
    weights: np.ndarray, probs: np.ndarray, targets: np.ndarray, threshold: float
) -> np.ndarray:
    """(B,) :func:`hamming` of each weighting."""
    wrong = ((probs >= threshold) != targets).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ wrong) / weights.sum(-1)


def weighted_ap_parts(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, ...]:
    """What :func:`weighted_average_precision` needs of one class, computed once: the images
    in decreasing score, whether each is positive, and where each run of tied scores ends."""
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
    return order, positive[order].astype(np.float64), ends


def weighted_average_precision(
    weights: np.ndarray, order: np.ndarray, positive: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """(B,) average precision (scikit-learn's step-wise sum over distinct thresholds) of each
    weighting; NaN where a weighting keeps no positive image."""
    w = weights[..., order]
    tp = np.cumsum(w * positive, axis=-1)[..., ends]
    seen = np.cumsum(w, axis=-1)[..., ends]
    gained = np.diff(tp, axis=-1, prepend=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / seen, 0.0)
        return (gained * precision).sum(-1) / tp[..., -1]


def weighted_macro(per_class: Iterable[np.ndarray]) -> np.ndarray:
    """(B,) mean over classes of (B,) values, skipping undefined (NaN) ones like
    :func:`nan_mean`; NaN where every class is undefined."""
    stacked = np.stack(list(per_class))
    defined = np.isfinite(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, stacked, 0.0).sum(0) / defined.sum(0)
