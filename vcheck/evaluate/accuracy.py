"""Accuracy measurements of specs/accuracy.md from one set of cached logits.

Each metric is computed on first request and memoised, so a suite that gates on three
metrics pays for three bootstraps, not eight.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable

import numpy as np

from vcheck.checks import Measurement
from vcheck.functional import classification as F
from vcheck.functional.intervals import bootstrap_interval, wilson_interval
from vcheck.predictions import Predictions
from vcheck.profiles import ACCURACY_METRICS


def applicable_metrics(num_classes: int, has_priors: bool) -> list[str]:
    """The accuracy metrics that are defined for a model with ``num_classes`` outputs."""
    names = list(ACCURACY_METRICS)
    if num_classes <= 5:
        names.remove("top5")
    if not has_priors:
        names.remove("top1_prior_corrected")
    return names


class AccuracyEvaluator:
    """Computes and memoises accuracy metrics of one :class:`Predictions`."""

    def __init__(
        self,
        predictions: Predictions,
        classes: tuple[str, ...],
        *,
        priors: tuple[float, ...] | None = None,
        resamples: int = 200,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> None:
        self.predictions = predictions
        self.classes = classes
        self.priors = np.asarray(priors) if priors else None
        self.resamples, self.seed, self.confidence = resamples, seed, confidence
        self.logits = predictions.logits.double().numpy()
        self.labels = predictions.labels.numpy()
        self.probs = predictions.probs
        self.preds = self.probs.argmax(axis=1)
        self.n = len(self.labels)

    def subset(self, indices: np.ndarray) -> AccuracyEvaluator:
        return AccuracyEvaluator(
            self.predictions.subset(indices),
            self.classes,
            priors=tuple(self.priors) if self.priors is not None else None,
            resamples=self.resamples,
            seed=self.seed,
            confidence=self.confidence,
        )

    @functools.cache  # noqa: B019 - one evaluator per (eval set, slice), living for the session
    def measure(self, metric: str) -> Measurement:
        try:
            compute = getattr(self, f"_{metric}")
        except AttributeError:
            raise ValueError(f"Unknown accuracy metric {metric!r}") from None
        return compute()

    def correct(self, k: int = 1) -> np.ndarray:
        """(N,) bool per-sample top-k correctness."""
        return F.topk_correct(self.probs, self.labels, k)

    # -- proportions: Wilson intervals ---------------------------------------------------
    def _proportion(self, correct: np.ndarray, **details) -> Measurement:
        k, n = int(correct.sum()), len(correct)
        value = k / n if n else math.nan
        ci = wilson_interval(k, n, self.confidence)
        return Measurement(value, n, ci, "wilson", details)

    def _top1(self) -> Measurement:
        return self._proportion(self.correct(1))

    def _top5(self) -> Measurement:
        return self._proportion(self.correct(5))

    def _top1_prior_corrected(self) -> Measurement:
        preds = F.prior_corrected_predictions(self.probs, self.priors)
        return self._proportion(preds == self.labels, priors=self.priors.round(6).tolist())

    def _worst_class_recall(self) -> Measurement:
        recall = F.per_class_recall(self.preds, self.labels, len(self.classes))
        present = np.flatnonzero(np.isfinite(recall))
        if len(present) == 0:
            return Measurement(math.nan, 0)
        worst = int(present[np.argmin(recall[present])])
        members = self.labels == worst
        per_class = {self.classes[c]: round(float(recall[c]), 6) for c in present}
        sizes = np.bincount(self.labels, minlength=len(self.classes))
        m = self._proportion(
            self.preds[members] == worst,
            worst_class=self.classes[worst],
            per_class_recall=per_class,
            per_class_n={self.classes[c]: int(sizes[c]) for c in present},  # report intervals
        )
        return m

    # -- other statistics: percentile bootstrap -----------------------------------------
    def _bootstrap(self, name: str, statistic: Callable[[np.ndarray], float], **details):
        value = statistic(np.arange(self.n))
        seed = self.seed * 1_000_003 + zlib.crc32(name.encode())
        ci = bootstrap_interval(
            statistic, self.n, resamples=self.resamples, seed=seed, confidence=self.confidence
        )
        return Measurement(value, self.n, ci, f"bootstrap-percentile({self.resamples})", details)

    def _balanced_accuracy(self) -> Measurement:
        return self._bootstrap(
            "balanced_accuracy", lambda i: F.balanced_accuracy(self.preds[i], self.labels[i])
        )

    def _auc_ovr_macro(self) -> Measurement:
        point = F.auc_ovr_macro(self.probs, self.labels)
        m = self._bootstrap(
            "auc_ovr_macro", lambda i: F.auc_ovr_macro_fast(self.probs[i], self.labels[i])
        )
        return Measurement(point, m.n, m.ci, m.ci_method)

    def _ece(self) -> Measurement:
        return self._bootstrap(
            "ece",
            lambda i: F.expected_calibration_error(self.probs[i], self.labels[i]),
            reliability=F.calibration_bins(self.probs, self.labels),
        )

    def _nll(self) -> Measurement:
        return Measurement(F.negative_log_likelihood(self.logits, self.labels), self.n)
