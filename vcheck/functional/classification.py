"""Pure classification metrics on numpy arrays (no pytest, no torch).

Shapes: ``probs`` (N, C) rows summing to 1, ``logits`` (N, C), ``labels`` (N,) ints in [0, C).
Where scikit-learn defines the metric, it is called; ECE and the rank AUC used inside the
bootstrap are written here and tested against the reference implementations.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.special import log_softmax
from scipy.stats import rankdata
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N,) bool: is the label among the ``k`` highest scores? Ties break toward lower index.

    >>> topk_correct(np.array([[0.1, 0.7, 0.2]]), np.array([2]), k=2).tolist()
    [True]
    """
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"Expected k in [1, {scores.shape[1]}], but got k={k}")
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def per_class_recall(preds: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) recall of each class; NaN for a class absent from ``labels``."""
    return recall_score(
        labels, preds, labels=np.arange(num_classes), average=None, zero_division=np.nan
    )


def balanced_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's definition)."""
    with warnings.catch_warnings():  # predicting a class absent from labels is fine here
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(labels, preds))


def auc_ovr_macro(probs: np.ndarray, labels: np.ndarray) -> float:
    """One-vs-rest ROC AUC, unweighted mean over classes (scikit-learn); NaN if undefined.

    Also defined for independent per-class scores (a sigmoid model's), whose rows need not
    sum to 1."""
    num_classes = probs.shape[1]
    present = np.unique(labels)
    if len(present) < 2:
        return math.nan
    if num_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    # sklearn's "ovr" needs every class present and rows that sum to 1; independent
    # (sigmoid) scores are ranked per class, which is what one-vs-rest AUC means anyway.
    if len(present) < num_classes or not np.allclose(probs.sum(axis=1), 1.0):
        return float(np.mean([_binary_auc(probs[:, c], labels == c) for c in present]))
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney form of ROC AUC with average ranks for ties."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_ovr_macro_fast(probs: np.ndarray, labels: np.ndarray) -> float:
    """Same value as :func:`auc_ovr_macro`; NaN when a class is absent (for the bootstrap)."""
    num_classes = probs.shape[1]
    if num_classes == 2:
        return _binary_auc(probs[:, 1], labels == 1)
    aucs = [_binary_auc(probs[:, c], labels == c) for c in range(num_classes)]
    return float(np.mean(aucs))


def weighted_auc_parts(
    scores: np.ndarray, positive: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`weighted_auc` needs of one binary problem, computed once per bootstrap.

    Returns the positives' indices, the negatives' indices in increasing score, and for each
    positive how many negatives score below it and how many score at most as high.
    """
    pos = np.flatnonzero(positive)
    neg = np.flatnonzero(~positive)
    neg = neg[np.argsort(scores[neg], kind="stable")]
    sorted_neg = scores[neg]
    below = np.searchsorted(sorted_neg, scores[pos], side="left")
    at_most = np.searchsorted(sorted_neg, scores[pos], side="right")
    return pos, neg, below, at_most


def weighted_auc(
    weights: np.ndarray, pos: np.ndarray, neg: np.ndarray, below: np.ndarray, at_most: np.ndarray
) -> np.ndarray:
    """ROC AUC with each sample counted ``weights[..., i]`` times (a bootstrap resample).

    Mann-Whitney form: each positive earns the weight of the negatives scored below it, plus
    half the weight of those tied with it. (B, N) weights -> (B,); NaN without both kinds.
    """
    w_neg = weights[..., neg]
    cum = np.concatenate([np.zeros((*w_neg.shape[:-1], 1)), np.cumsum(w_neg, axis=-1)], axis=-1)
    credit = (cum[..., below] + cum[..., at_most]) / 2
    w_pos = weights[..., pos]
    total = w_pos.sum(axis=-1) * cum[..., -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * credit).sum(axis=-1) / total


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins over (0, 1].

    ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|, confidence = max prob.

    >>> round(expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])), 3)
    0.35
    """
    if len(labels) == 0:
        return math.nan
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(labels))


def calibration_gaps(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """(N, n_bins): each sample's correct - confidence in its bin's column, zeros elsewhere.

    ``|weights @ gaps|`` summed over bins and divided by the total weight is the ECE of a
    weighted (bootstrap) sample.
    """
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gaps = np.zeros((len(labels), n_bins))
    gaps[np.arange(len(labels)), bins] = correct - confidence
    return gaps


def calibration_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Per-bin count, mean confidence and accuracy: the data of a reliability diagram."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return {
        "count": count.tolist(),
        "confidence": _nan_to_none(conf),
        "accuracy": _nan_to_none(acc),
    }


def _nan_to_none(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else round(float(v), 6) for v in a]


def per_sample_nll(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) -log softmax(logits)[label], computed in float64."""
    logp = log_softmax(logits.astype(np.float64), axis=1)
    return -logp[np.arange(len(labels)), labels]


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log softmax(logits)[label], computed in float64."""
    return float(per_sample_nll(logits, labels).mean())


def prior_corrected_predictions(probs: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """argmax_i p(i|x) / p(i) (Buda et al.): undoes a class prior baked into training."""
    return np.argmax(probs / priors[None, :], axis=1)
