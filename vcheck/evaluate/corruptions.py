"""Common corruptions (specs/robustness.md, "Common corruptions"): the ``[corruptions]``
profile table, the corrupted predictions of one eval set, and their Measurements.

On a seeded class-stratified sample (the adversarial suite's, when both take the same number
of samples), every corruption of :mod:`vcheck.robustness.corruptions` at five severities:

- accuracy per corruption and severity (Wilson), per corruption (mean over severities);
- mean corruption accuracy over all corruptions and severities, and its relative drop
  against clean accuracy on the same samples; bootstrap intervals over images;
- gates: ``min_mean_accuracy`` on the mean, ``min_worst_accuracy`` on the worst corruption
  (mean over its severities), ``max_relative_drop`` on the drop.

Results are cached per (model, preprocessing, eval set, settings, seed).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vcheck.cache import ResultCache, cache_key
from vcheck.checks import Measurement, Threshold
from vcheck.data.evalset import EvalSet, stratified_indices
from vcheck.errors import UnknownNameError
from vcheck.functional.intervals import bootstrap_interval, wilson_interval
from vcheck.models.base import ModelUnderTest
from vcheck.profiles import (
    ERROR_RATE,
    PROPORTION,
    ProfileContext,
    check_keys,
    parse_threshold,
    positive_int,
    string_list,
)
from vcheck.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt


@dataclass(frozen=True)
class CorruptionProfile:
    """Settings and gates of the corruption suite (the ``[corruptions]`` table)."""

    corruptions: tuple[str, ...] = CORRUPTIONS
    samples: int = 500
    batch_size: int = 500
    min_mean_accuracy: Threshold | None = None
    min_worst_accuracy: Threshold | None = None
    max_relative_drop: Threshold | None = None

    def settings(self) -> dict[str, Any]:
        return {"corruptions": list(self.corruptions), "samples": self.samples}


_KEYS = (
    "corruptions",
    "samples",
    "batch_size",
    "min_mean_accuracy",
    "min_worst_accuracy",
    "max_relative_drop",
)


def parse_profile(table: dict[str, Any], ctx: ProfileContext) -> CorruptionProfile:
    """Validate the ``[corruptions]`` table; ``{}`` gives the defaults (informational).

    Example::

        [corruptions]
        samples = 500                 # seeded, class-stratified (--max-samples caps it)
        min_mean_accuracy = 0.7       # mean over the 8 corruptions x 5 severities
        min_worst_accuracy = 0.4      # the worst corruption, mean over its severities
        max_relative_drop = 0.25      # (clean - mean) / clean
    """
    where = ctx.where("corruptions")
    check_keys(table, _KEYS, where, "corruptions setting")
    d = CorruptionProfile()
    names = string_list("corruptions", table.get("corruptions", list(d.corruptions)), where)
    for name in names:
        if name not in CORRUPTIONS:
            raise UnknownNameError("corruption", name, CORRUPTIONS, f"(in {where})")

    def gate(key: str, direction: str, spec) -> Threshold | None:
        return parse_threshold(key, {direction: table[key]}, spec, where) if key in table else None

    return CorruptionProfile(
        corruptions=tuple(dict.fromkeys(names)),
        samples=positive_int("samples", table.get("samples", d.samples), where),
        batch_size=positive_int("batch_size", table.get("batch_size", d.batch_size), where),
        min_mean_accuracy=gate("min_mean_accuracy", "min", PROPORTION),
        min_worst_accuracy=gate("min_worst_accuracy", "min", PROPORTION),
        max_relative_drop=gate("max_relative_drop", "max", ERROR_RATE),
    )


def _seed(seed: int, name: str, severity: int) -> int:
    return (seed * 1_000_003 + zlib.crc32(f"{name}/{severity}".encode())) % 2**31


def run_corruptions(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    profile: CorruptionProfile,
    *,
    seed: int,
    write: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Predictions on every corruption x severity, ``(C, S, N)``."""
    idx = np.asarray(stratified_indices(eval_set.labels, min(profile.samples, len(eval_set)), seed))
    x = eval_set.images(idx.tolist())
    pred = np.zeros((len(profile.corruptions), len(SEVERITIES), len(idx)), np.int64)
    if write:
        total = len(profile.corruptions) * len(SEVERITIES)
        write(f"vcheck: corruptions on {eval_set.name}: {total} x {len(idx)} images")
    with torch.no_grad():
        for c, name in enumerate(profile.corruptions):
            for s, severity in enumerate(SEVERITIES):
                for start in range(0, len(idx), profile.batch_size):
                    part = x[start : start + profile.batch_size]
                    bad = corrupt(part, name, severity, seed=_seed(seed, name, severity) + start)
                    logits = model.module(bad.to(model.device))
                    pred[c, s, start : start + len(part)] = logits.argmax(1).cpu().numpy()
    return {
        "ids": idx,
        "labels": eval_set.labels[idx].numpy(),
        "clean": clean_pred[idx],
        "predictions": pred,
    }


@dataclass(frozen=True)
class CorruptionOutcome:
    """Per-sample predictions under every corruption, and the suite's Measurements."""

    corruptions: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    from_cache: bool
    resamples: int = 1000
    seed: int = 0

    @property
    def n(self) -> int:
        return len(self.arrays["labels"])

    @property
    def correct(self) -> np.ndarray:
        """``(C, S, N)`` correctness under each corruption and severity."""
        return self.arrays["predictions"] == self.arrays["labels"]

    @property
    def clean_accuracy(self) -> float:
        a = self.arrays
        return float((a["clean"] == a["labels"]).mean()) if self.n else math.nan

    def accuracy(self, corruption: str, severity: int, confidence: float) -> Measurement:
        c = self.corruptions.index(corruption)
        k = int(self.correct[c, severity - 1].sum())
        return Measurement(
            k / self.n if self.n else math.nan,
            self.n,
            wilson_interval(k, self.n, confidence),
            "wilson",
            {"corruption": corruption, "severity": severity},
        )

    def _bootstrap(
        self, value: float, statistic: Callable[[np.ndarray], float], confidence: float, **details
    ) -> Measurement:
        """``statistic`` of the resampled image indices, with scipy's bootstrap interval."""
        result = bootstrap_interval(
            statistic, self.n, resamples=self.resamples, seed=self.seed, confidence=confidence
        )
        if result.note:
            details["interval_note"] = result.note
        return Measurement(value, self.n, result.ci, result.method, details)

    def corruption_accuracy(self, corruption: str, confidence: float) -> Measurement:
        """Accuracy under one corruption, mean over its severities."""
        per_image = self.correct[self.corruptions.index(corruption)].mean(0)
        return self._bootstrap(
            float(per_image.mean()) if self.n else math.nan,
            lambda i: float(per_image[i].mean()),
            confidence,
            corruption=corruption,
        )

    def mean_accuracy(self, confidence: float) -> Measurement:
        per_image = self.correct.mean((0, 1))
        return self._bootstrap(
            float(per_image.mean()) if self.n else math.nan,
            lambda i: float(per_image[i].mean()),
            confidence,
            clean_accuracy=round(self.clean_accuracy, 6),
            corruptions=len(self.corruptions),
        )

    def worst(self, confidence: float) -> Measurement:
        means = self.correct.mean((1, 2))
        c = int(np.argmin(means))
        # The minimum of k corruptions was picked after seeing them: a Bonferroni-adjusted
        # level keeps its interval honest under --gate upper (as for the worst class).
        k = len(self.corruptions)
        m = self.corruption_accuracy(self.corruptions[c], 1 - (1 - confidence) / k)
        details = {"worst_corruption": self.corruptions[c], "interval": f"Bonferroni over {k}"}
        return Measurement(m.value, m.n, m.ci, m.ci_method, details)

    def relative_drop(self, confidence: float) -> Measurement:
        """(clean - mean corruption accuracy) / clean, on the same images."""
        a = self.arrays
        clean = (a["clean"] == a["labels"]).astype(float)
        corrupted = self.correct.mean((0, 1))

        def drop(i: np.ndarray) -> float:
            base = clean[i].mean()
            return float((base - corrupted[i].mean()) / base) if base > 0 else math.nan

        value = drop(np.arange(self.n)) if self.n else math.nan
        return self._bootstrap(value, drop, confidence, clean_accuracy=self.clean_accuracy)


def evaluate_corruptions(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    profile: CorruptionProfile,
    *,
    seed: int,
    cache: ResultCache,
    resamples: int = 1000,
    write: Callable[[str], None] | None = None,
) -> CorruptionOutcome:
    """:func:`run_corruptions` through the result cache."""
    import vcheck

    key = cache_key(
        vcheck.__version__,
        "corruptions",
        model.fingerprint,
        model.cfg.preprocessing_key(),
        eval_set.fingerprint,
        profile.settings(),
        seed,
    )
    shape = (len(profile.corruptions), len(SEVERITIES))

    def valid(arrays) -> bool:
        return {"ids", "labels", "clean", "predictions"} <= set(arrays) and arrays[
            "predictions"
        ].shape == (*shape, len(arrays["labels"]))

    arrays, from_cache = cache.arrays(
        key,
        lambda: run_corruptions(model, eval_set, clean_pred, profile, seed=seed, write=write),
        validate=valid,
    )
    if from_cache and write is not None:
        write(f"vcheck: corruptions on {eval_set.name}: from cache")
    return CorruptionOutcome(profile.corruptions, arrays, from_cache, resamples, seed)
