"""Coverage simulations of the accuracy suite's intervals (shared by the tests and
benchmarks/bench_intervals.py).

Each scenario draws a synthetic eval set whose metric has a known true value, runs the real
:class:`~vcheck.evaluate.accuracy.AccuracyEvaluator` on it, and counts how often the interval
contains the truth. Class counts are fixed by design (the stratified bootstrap conditions on
them); everything else is random, seeded per draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from vcheck.evaluate.accuracy import AccuracyEvaluator
from vcheck.predictions import Predictions

RECALLS = np.array([0.95, 0.9, 0.85, 0.8])  # per class; the worst is 0.8, the mean 0.875
AUC_SHIFT = 1.5  # class-1 score ~ N(1.5, 1), class-0 ~ N(0, 1): AUC = Phi(1.5 / sqrt 2)
NLL_SHAPE = 2.0  # p(label) = U ** (1 / 2): -log p ~ Exponential(2), mean 0.5


@dataclass(frozen=True)
class Scenario:
    metric: str
    truth: float
    draw: Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]  # logits, labels
    promised: bool = True  # does the method promise nominal coverage here?
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.metric


def _balanced_labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes


def _per_class_recall(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(n, len(RECALLS))
    right = rng.random(n) < RECALLS[labels]
    wrong = (labels + rng.integers(1, len(RECALLS), n)) % len(RECALLS)
    preds = np.where(right, labels, wrong)
    return 3.0 * np.eye(len(RECALLS))[preds] + 0.01 * rng.random((n, len(RECALLS))), labels


def _auc(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = _balanced_labels(n, 2)
    score = rng.normal(AUC_SHIFT * labels, 1.0)
    return np.stack([np.zeros(n), score], axis=1), labels


def _probability_of_label(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Two-class logits whose softmax gives the label probability ``p``."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    logits = np.stack([np.log(1 - p), np.log(p)], axis=1)
    return np.where(labels[:, None] == 1, logits, logits[:, ::-1])


def _nll(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    return _probability_of_label(rng.random(n) ** (1 / NLL_SHAPE), labels), labels


def _confident(accuracy: float) -> Callable[[int, np.random.Generator], tuple]:
    """Confidence always 0.9, right with probability ``accuracy``: ECE = |accuracy - 0.9|."""

    def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 2, n)
        right = rng.random(n) < accuracy
        return _probability_of_label(np.where(right, 0.9, 0.1), labels), labels

    return draw


def _top1(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return _confident(0.9)(n, rng)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("top1", 0.9, _top1),
        Scenario("worst_class_recall", float(RECALLS.min()), _per_class_recall),
        Scenario("balanced_accuracy", float(RECALLS.mean()), _per_class_recall),
        Scenario("auc_ovr_macro", float(norm.cdf(AUC_SHIFT / math.sqrt(2))), _auc),
        Scenario("nll", 1 / NLL_SHAPE, _nll),
        Scenario("ece", 0.1, _confident(0.8), label="ece (miscalibrated by 0.1)"),
        Scenario("ece", 0.0, _confident(0.9), promised=False, label="ece (calibrated)"),
    )
}


def evaluator(logits: np.ndarray, labels: np.ndarray, **kw) -> AccuracyEvaluator:
    n, c = logits.shape
    predictions = Predictions(
        torch.as_tensor(logits, dtype=torch.float32),
        torch.as_tensor(labels, dtype=torch.int64),
        [str(i) for i in range(n)],
        "softmax",
        "synthetic",
        0.0,
        False,
    )
    return AccuracyEvaluator(predictions, tuple(f"c{i}" for i in range(c)), **kw)


def coverage(
    name: str,
    n: int,
    draws: int,
    *,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Fraction of ``draws`` seeded eval sets of size ``n`` whose interval holds the truth."""
    scenario = SCENARIOS[name]
    hits = 0
    for i in range(draws):
        rng = np.random.default_rng([seed, n, i])
        logits, labels = scenario.draw(n, rng)
        ev = evaluator(logits, labels, resamples=resamples, seed=i, confidence=confidence)
        low, high = ev.measure(scenario.metric).ci
        hits += bool(low <= scenario.truth <= high)
    return hits / draws
