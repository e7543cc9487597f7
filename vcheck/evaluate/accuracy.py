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

from vcheck.cache import ResultCache, cache_key
from vcheck.checks import Measurement
from vcheck.functional import classification as F
from vcheck.functional.intervals import (
    BootstrapInterval,
    bootstrap_interval,
    resample_weights,
    wilson_interval,
    worst_of_wilson,
)
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
        resamples: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
        cache: ResultCache | None = None,
    ) -> None:
        self.predictions = predictions
        self.cache = cache  # bootstrap intervals, so a warm run does not resample again
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
            cache=self.cache,
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
        num_classes = len(self.classes)
        sizes = np.bincount(self.labels, minlength=num_classes)
        hits = np.bincount(self.labels[self.preds == self.labels], minlength=num_classes)
        present = np.flatnonzero(sizes)
        if len(present) == 0:
            return Measurement(math.nan, 0)
        worst, ci = worst_of_wilson(hits, sizes, self.confidence)
        per_class = {self.classes[c]: round(float(hits[c] / sizes[c]), 6) for c in present}
        return Measurement(
            float(hits[worst] / sizes[worst]),
            int(sizes[worst]),
            ci,
            f"wilson-bonferroni({len(present)} classes)",
            {
                "worst_class": self.classes[worst],
                "per_class_recall": per_class,
                "per_class_n": {self.classes[c]: int(sizes[c]) for c in present},
                "per_class_ci": {  # each class alone, at the run's confidence (the report's bars)
                    self.classes[c]: [
                        round(v, 6) for v in wilson_interval(hits[c], sizes[c], self.confidence)
                    ]
                    for c in present
                },
                "interval": f"simultaneous over {len(present)} classes (Wilson at level 1 - "
                f"(1 - {self.confidence:g}) / {len(present)} each, Bonferroni), so it holds for "
                "the worst class although that class was picked for being low",
            },
        )

    # -- other statistics: bootstrap (scipy), vectorised over resample weights ------------
    def _bootstrap(
        self,
        name: str,
        value: float,
        statistic: Callable[[np.ndarray], np.ndarray],
        *,
        stratified: bool = False,
        **details,
    ) -> Measurement:
        """``statistic`` maps (B, N) resample counts of each sample to (B,) metric values."""
        seed = self.seed * 1_000_003 + zlib.crc32(name.encode())
        n = self.n

        def compute() -> BootstrapInterval:
            return bootstrap_interval(
                lambda idx: statistic(resample_weights(idx, n)),
                n,
                resamples=self.resamples,
                seed=seed,
                confidence=self.confidence,
                strata=self.labels if stratified else None,
                stratum_names={c: f"class {name!r}" for c, name in enumerate(self.classes)},
                vectorized=True,
            )

        result = self._cached_interval(name, stratified, compute)
        if result.note:
            details["ci_note"] = result.note
        return Measurement(value, n, result.ci, result.method, details)

    def _cached_interval(
        self, name: str, stratified: bool, compute: Callable[[], BootstrapInterval]
    ) -> BootstrapInterval:
        """``compute()``, or its stored result for the same predictions (model, data and
        samples), metric, settings and metric code: resampling is most of a warm run."""
        if self.cache is None or not self.cache.enabled or not self.predictions.key:
            return compute()
        key = cache_key(
            "accuracy-bootstrap",
            self.predictions.key,
            _digest_ids(self.predictions.ids),
            name,
            stratified,
            self.resamples,
            self.seed,
            self.confidence,
            None if self.priors is None else self.priors.tolist(),
            _metric_code(),
        )
        stored = self.cache.load_json(key)
        if isinstance(stored, list) and len(stored) == 4:
            low, high, method, note = stored
            return BootstrapInterval(float(low), float(high), str(method), str(note))
        result = compute()
        self.cache.store_json(key, [result.low, result.high, result.method, result.note])
        return result

    def _class_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, C') one-hot of the labels over the classes present, and their indices."""
        present = np.unique(self.labels)
        return (self.labels[:, None] == present[None, :]).astype(np.float64), present

    def _balanced_accuracy(self) -> Measurement:
        onehot, _ = self._class_columns()
        hits = onehot * (self.preds == self.labels)[:, None]

        def statistic(w: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return ((w @ hits) / (w @ onehot)).mean(axis=-1)

        value = F.balanced_accuracy(self.preds, self.labels) if self.n else math.nan
        return self._bootstrap("balanced_accuracy", value, statistic, stratified=True)

    def _auc_ovr_macro(self) -> Measurement:
        value = F.auc_ovr_macro(self.probs, self.labels) if self.n else math.nan
        num_classes = self.probs.shape[1]
        if num_classes == 2:
            parts = [F.weighted_auc_parts(self.probs[:, 1], self.labels == 1)]
        else:
            parts = [
                F.weighted_auc_parts(self.probs[:, c], self.labels == c)
                for c in np.unique(self.labels)
            ]

        def statistic(w: np.ndarray) -> np.ndarray:
            return np.mean([F.weighted_auc(w, *p) for p in parts], axis=0)

        return self._bootstrap("auc_ovr_macro", value, statistic, stratified=True)

    def _ece(self) -> Measurement:
        gaps = F.calibration_gaps(self.probs, self.labels)

        def statistic(w: np.ndarray) -> np.ndarray:
            return np.abs(w @ gaps).sum(axis=-1) / w.sum(axis=-1)

        return self._bootstrap(
            "ece",
            F.expected_calibration_error(self.probs, self.labels),
            statistic,
            reliability=F.calibration_bins(self.probs, self.labels),
            bias="ECE is biased upward at small n (noise in each bin adds to |gap|); BCa "
            "corrects part of it, so the interval can lie below the estimate",
        )

    def _nll(self) -> Measurement:
        per_sample = F.per_sample_nll(self.logits, self.labels)
        return self._bootstrap(
            "nll",
            float(per_sample.mean()) if self.n else math.nan,
            lambda w: (w @ per_sample) / w.sum(axis=-1),
        )


def _digest_ids(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\0".join(map(str, ids)).encode()).hexdigest()


@functools.cache
def _metric_code() -> str:
    """A digest of the code behind the accuracy intervals: a change recomputes them."""
    import hashlib
    from pathlib import Path

    import vcheck

    root = Path(vcheck.__file__).parent
    h = hashlib.sha256(vcheck.__version__.encode())
    for rel in ("evaluate/accuracy.py", "functional/classification.py", "functional/intervals.py"):
        h.update((root / rel).read_bytes())
    return h.hexdigest()
