"""Attack success counts: how many correctly classified samples an attack turns wrong."""

from __future__ import annotations

import numpy as np


def attack_success_counts(
    labels: np.ndarray, clean_pred: np.ndarray, attacked_pred: np.ndarray
) -> tuple[int, int]:
    """``(k, n)`` of the attack success rate ASR = k / n, where n counts the samples
    classified correctly without the attack and k those of them classified wrongly with it.

    >>> attack_success_counts(np.array([0, 1, 2]), np.array([0, 1, 0]), np.array([1, 1, 2]))
    (1, 2)
    """
    labels, clean_pred, attacked_pred = map(np.asarray, (labels, clean_pred, attacked_pred))
    if not labels.shape == clean_pred.shape == attacked_pred.shape:
        raise ValueError(
            f"labels {labels.shape}, clean {clean_pred.shape} and attacked "
            f"{attacked_pred.shape} predictions must have one shape"
        )
    correct = clean_pred == labels
    return int((correct & (attacked_pred != labels)).sum()), int(correct.sum())
