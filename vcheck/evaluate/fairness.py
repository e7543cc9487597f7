"""Fairness measurements (specs/fairness.md) of one attribute of one eval set, from the one
cached forward pass, and the ``[fairness]`` table of the threshold profile.

An attribute splits the samples into groups (a metadata column, or an image-derived slice).
Groups with fewer than ``min_group_size`` samples are excluded from every gap and listed as
such; every other group contributes its top-1 accuracy (Wilson interval). Over the included
groups: the accuracy gap (max - min), ratio (min / max), worst-group accuracy, the five
fairness metrics of :mod:`vcheck.functional.fairness` and the profile's named pair gaps
(accuracy of one group minus another's). Their intervals come from one percentile bootstrap
stratified by group (:func:`vcheck.functional.group_bootstrap.stratified_bootstrap_interval`):
every resample keeps each group's size.

Profile table (every key optional)::

    [fairness]
    min_group_size = 30                 # groups below it are excluded and listed
    min_class_samples = 20              # fewest positives (negatives) behind a group's TPR
                                        # (FPR) of a class in SPD..AED; fewer: left out
    accuracy_gap = { max = 0.10 }       # thresholds for every attribute
    accuracy_ratio = { min = 0.90 }
    worst_group_accuracy = { min = 0.80 }
    spd = { max = 0.05 }                # also deo, eod, aaod, aed

    [fairness.attributes.region]        # per attribute: its own thresholds / min_group_size
    accuracy_gap = { max = 0.15 }

    [fairness.slices.lighting]          # image-derived slices: when [fairness.slices] is
    edges = [85, 170]                   # given, exactly these (default: the domain's, see
    labels = ["dark", "normal", "bright"]   # vcheck.evaluate.slices); measure = "..." lets
                                        # a slice of another name reuse a measure
    [fairness.pairs.europe_minus_africa]
    attribute = "region"
    groups = ["Europe", "Africa"]       # accuracy of the first minus the second
    gap = { max = 0.05 }

Public names: FairnessProfile, parse_profile, AttributeResult, evaluate_attribute, SUMMARY_SPECS.
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vcheck.checks import Measurement, Threshold
from vcheck.errors import InvalidArgument
from vcheck.evaluate.slices import SliceBins, domain_bins
from vcheck.functional.fairness import FAIRNESS_METRICS, fairness_metrics, group_counts
from vcheck.functional.group_bootstrap import stratified_bootstrap_interval
from vcheck.functional.image_slices import MEASURES
from vcheck.functional.intervals import wilson_interval, worst_of_wilson
from vcheck.profiles import (
    ERROR_RATE,
    PROPORTION,
    MetricSpec,
    ProfileContext,
    check_keys,
    check_table,
    number_list,
    parse_threshold,
    parse_thresholds,
    positive_int,
    string_list,
)

GAP = MetricSpec(higher_is_better=False, low=0.0, high=1.0)
PAIR_GAP = MetricSpec(higher_is_better=False, low=-1.0, high=1.0)
SUMMARY_SPECS: dict[str, MetricSpec] = {
    "accuracy_gap": GAP,
    "accuracy_ratio": PROPORTION,
    "worst_group_accuracy": PROPORTION,
    **{m: ERROR_RATE for m in FAIRNESS_METRICS},
}
DEFAULT_MIN_GROUP_SIZE = 30
DEFAULT_MIN_CLASS_SAMPLES = 20
_SETTINGS = ("min_group_size", "min_class_samples", "attributes", "slices", "pairs")
_BOOTSTRAPPED = ("accuracy_gap", "accuracy_ratio", *FAIRNESS_METRICS)


# -- the [fairness] table --------------------------------------------------------------------


@dataclass(frozen=True)
class AttributeSettings:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    min_group_size: int | None = None


@dataclass(frozen=True)
class SliceSetting:
    """An image-derived slice named in the profile; unset edges take the domain's."""

    name: str
    measure: str
    edges: tuple[float, ...] | None = None
    labels: tuple[str, ...] | None = None

    def bins(self, domain: str) -> SliceBins:
        from vcheck.data.metadata import bin_labels

        if self.edges is None:
            return domain_bins(domain, self.measure)
        return SliceBins(self.measure, self.edges, self.labels or bin_labels(self.edges))


@dataclass(frozen=True)
class PairSpec:
    """Accuracy of ``groups[0]`` minus that of ``groups[1]`` within ``attribute``."""

    name: str
    attribute: str
    groups: tuple[str, str]
    threshold: Threshold | None = None


@dataclass(frozen=True)
class FairnessProfile:
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    attributes: dict[str, AttributeSettings] = field(default_factory=dict)
    slices: tuple[SliceSetting, ...] | None = None  # None: the domain's default slices
    pairs: tuple[PairSpec, ...] = ()
    min_class_samples: int = DEFAULT_MIN_CLASS_SAMPLES

    def thresholds_for(self, attribute: str) -> dict[str, Threshold]:
        own = self.attributes.get(attribute, AttributeSettings())
        return {**self.thresholds, **own.thresholds}

    def min_group_size_for(self, attribute: str) -> int:
        own = self.attributes.get(attribute, AttributeSettings())
        return own.min_group_size or self.min_group_size

    def image_slices(self, domain: str) -> dict[str, SliceBins]:
        from vcheck.evaluate.slices import default_slices

        if self.slices is None:
            return default_slices(domain)
        return {s.name: s.bins(domain) for s in self.slices}


def parse_profile(table: dict[str, Any], ctx: ProfileContext) -> FairnessProfile:
    """The ``[fairness]`` table (``{}``: defaults, every check informational)."""
    where = ctx.where("fairness")
    check_keys(table, (*SUMMARY_SPECS, *_SETTINGS), where, "fairness setting")
    top = dict(table)
    attributes = check_table("attributes", top.pop("attributes", {}), where)
    slices = top.pop("slices", None)
    pairs = check_table("pairs", top.pop("pairs", {}), where)
    min_size = positive_int(
        "min_group_size", top.pop("min_group_size", DEFAULT_MIN_GROUP_SIZE), where
    )
    min_class = positive_int(
        "min_class_samples", top.pop("min_class_samples", DEFAULT_MIN_CLASS_SAMPLES), where
    )
    thresholds = parse_thresholds(top, SUMMARY_SPECS, where)
    parsed_attributes = {}
    for name, sub in attributes.items():
        at = f"[fairness.attributes.{name}] of {ctx.path}"
        sub = dict(check_table(f"fairness.attributes.{name}", sub, str(ctx.path)))
        check_keys(sub, (*SUMMARY_SPECS, "min_group_size"), at, "attribute setting")
        own_min = sub.pop("min_group_size", None)
        parsed_attributes[name] = AttributeSettings(
            parse_thresholds(sub, SUMMARY_SPECS, at, skip=("min_group_size",)),
            None if own_min is None else positive_int("min_group_size", own_min, at),
        )
    return FairnessProfile(
        min_size,
        thresholds,
        parsed_attributes,
        None if slices is None else _slices(check_table("slices", slices, where), ctx),
        tuple(_pair(n, t, ctx) for n, t in pairs.items()),
        min_class,
    )


def _slices(table: dict[str, Any], ctx: ProfileContext) -> tuple[SliceSetting, ...]:
    out = []
    for name, sub in table.items():
        at = f"[fairness.slices.{name}] of {ctx.path}"
        sub = check_table(f"fairness.slices.{name}", sub, str(ctx.path))
        check_keys(sub, ("measure", "edges", "labels"), at, "slice setting")
        measure = sub.get("measure", name)
        if measure not in MEASURES:
            raise InvalidArgument(
                f"measure={measure!r} in {at}: expected one of {', '.join(MEASURES)} (or name "
                "the slice after its measure)"
            )
        edges = sub.get("edges")
        labels = sub.get("labels")
        if edges is not None:
            edges = number_list("edges", edges, at)
            if any(a >= b for a, b in itertools.pairwise(edges)):
                raise InvalidArgument(f"edges={list(edges)} in {at}: expected increasing edges")
        if labels is not None:
            labels = string_list("labels", labels, at)
            if edges is None or len(labels) != len(edges) + 1 or len(set(labels)) != len(labels):
                raise InvalidArgument(
                    f"labels={list(labels)} in {at}: expected {len(edges or ()) + 1} distinct "
                    "names, one per bin, with the edges that cut them"
                )
        out.append(SliceSetting(name, measure, edges, labels))
    return tuple(out)


def _pair(name: str, table: Any, ctx: ProfileContext) -> PairSpec:
    at = f"[fairness.pairs.{name}] of {ctx.path}"
    table = check_table(f"fairness.pairs.{name}", table, str(ctx.path))
    check_keys(table, ("attribute", "groups", "gap"), at, "pair setting")
    attribute = table.get("attribute")
    if not isinstance(attribute, str):
        raise InvalidArgument(f"attribute={attribute!r} in {at}: expected an attribute name")
    groups = table.get("groups")
    if (
        not isinstance(groups, list)
        or len(groups) != 2
        or not all(isinstance(g, str) for g in groups)
        or groups[0] == groups[1]
    ):
        raise InvalidArgument(
            f"groups={groups!r} in {at}: expected two different group names, e.g. "
            '["Europe", "Africa"] for Europe minus Africa'
        )
    threshold = parse_threshold("gap", table["gap"], PAIR_GAP, at) if "gap" in table else None
    return PairSpec(name, attribute, (groups[0], groups[1]), threshold)


# -- measurement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    n: int
    correct: int
    accuracy: float
    ci: tuple[float, float]
    included: bool
    top5: float | None = None

    def describe(self) -> str:
        return f"{self.name} {self.accuracy:.4f} (n={self.n})"


@dataclass
class AttributeResult:
    """Every measurement of one attribute of one eval set (see the module docstring)."""

    attribute: str
    source: str
    groups: list[Group]
    min_group_size: int
    measurements: dict[str, Measurement]
    pair_values: dict[str, Measurement]

    @property
    def included(self) -> list[Group]:
        return [g for g in self.groups if g.included]

    @property
    def excluded(self) -> list[Group]:
        return [g for g in self.groups if not g.included]

    def excluded_note(self) -> str:
        if not self.excluded:
            return ""
        listed = ", ".join(f"{g.name} (n={g.n})" for g in self.excluded)
        return f"excluded (n < {self.min_group_size}): {listed}"

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)


def evaluate_attribute(
    attribute: str,
    source: str,
    group_labels: Sequence[str],
    order: Sequence[str],
    labels: np.ndarray,
    preds: np.ndarray,
    *,
    num_classes: int,
    min_group_size: int,
    min_class_samples: int = 1,
    pairs: Sequence[PairSpec] = (),
    top5_correct: np.ndarray | None = None,
    resamples: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    eval_set: str = "",
) -> AttributeResult:
    """Measure one attribute: per-group accuracy, gaps with stratified bootstrap intervals.

    Args:
        group_labels: (N,) the group of every sample.
        order: every group, in display order (groups without samples included: listed as
            excluded with n = 0).
        labels, preds: (N,) true and predicted class indices.
        min_class_samples: fewest positives (negatives) a group needs for its TPR (FPR) of a
            class to count in the fairness metrics.
        pairs: the profile's pair gaps on this attribute.
    """
    index = {g: i for i, g in enumerate(order)}
    unknown = sorted(set(group_labels) - set(index))
    if unknown:
        raise ValueError(f"groups {unknown} are not in order={list(order)}")
    codes = np.fromiter((index[g] for g in group_labels), dtype=np.int64, count=len(labels))
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    right = labels == preds
    n = np.bincount(codes, minlength=len(order))
    correct = np.bincount(codes, weights=right, minlength=len(order)).astype(np.int64)
    groups = []
    for i, name in enumerate(order):
        k, m = int(correct[i]), int(n[i])
        top5 = None
        if top5_correct is not None and m:
            top5 = float(top5_correct[codes == i].mean())
        groups.append(
            Group(
                name,
                m,
                k,
                k / m if m else math.nan,
                wilson_interval(k, m, confidence),
                m >= max(min_group_size, 1),
                top5,
            )
        )
    included = [i for i, g in enumerate(groups) if g.included]
    remap = np.full(len(order), -1, dtype=np.int64)
    remap[included] = np.arange(len(included))
    keep = np.flatnonzero(remap[codes] >= 0)
    y, p, g = labels[keep], preds[keep], remap[codes[keep]]
    classes = np.array([1]) if num_classes == 2 else np.unique(y)
    pair_index = []
    for pair in pairs:
        a, b = (index.get(name, -1) for name in pair.groups)
        ok = a >= 0 and b >= 0 and remap[a] >= 0 and remap[b] >= 0
        pair_index.append((remap[a], remap[b]) if ok else None)

    def statistic(idx: np.ndarray) -> np.ndarray:
        counts = group_counts(y[idx], p[idx], g[idx], len(included), classes)
        acc = counts.accuracy
        metrics = fairness_metrics(counts, min_class_samples)
        hi, lo = (np.max(acc), np.min(acc)) if len(acc) >= 2 else (math.nan, math.nan)
        ratio = lo / hi if hi > 0 else math.nan
        values = [hi - lo, ratio, *(metrics[m] for m in FAIRNESS_METRICS)]
        values += [acc[ab[0]] - acc[ab[1]] if ab else math.nan for ab in pair_index]
        return np.array(values, dtype=np.float64)

    point = statistic(np.arange(len(y)))
    seed = seed * 1_000_003 + zlib.crc32(f"{eval_set}/{attribute}".encode())
    if len(included) >= 2:
        low, high, undefined = stratified_bootstrap_interval(
            statistic, g, resamples=resamples, seed=seed, confidence=confidence
        )
    else:
        low = high = np.full(len(point), np.nan)
        undefined = np.zeros(len(point), dtype=np.int64)
    method = f"stratified-bootstrap-percentile({resamples})"
    total = len(y)
    counts = group_counts(y, p, g, len(included), classes)
    left_out = fairness_metrics(counts, min_class_samples)
    measurements: dict[str, Measurement] = {}
    for j, metric in enumerate(_BOOTSTRAPPED):
        details = {"groups": len(included)}
        if undefined[j]:
            details["ci_note"] = f"undefined in {undefined[j]} of {resamples} resamples"
        if metric in FAIRNESS_METRICS:
            details.update(
                classes=len(classes),
                min_class_samples=min_class_samples,
                left_out_tpr=left_out["left_out_tpr"],
                left_out_fpr=left_out["left_out_fpr"],
            )
        measurements[metric] = Measurement(
            float(point[j]), total, (float(low[j]), float(high[j])), method, details
        )
    inc = [groups[i] for i in included]
    if inc:
        pick, ci = worst_of_wilson([grp.correct for grp in inc], [grp.n for grp in inc], confidence)
        worst = inc[pick]
        measurements["worst_group_accuracy"] = Measurement(
            worst.accuracy,
            worst.n,
            ci,
            f"wilson-bonferroni({len(inc)} groups)",
            {"worst_group": worst.name},
        )
    else:
        measurements["worst_group_accuracy"] = Measurement(math.nan, 0)
    base = len(_BOOTSTRAPPED)
    pair_values = {
        pair.name: Measurement(
            float(point[base + j]),
            total,
            (float(low[base + j]), float(high[base + j])),
            method,
            {"groups": list(pair.groups)},
        )
        for j, pair in enumerate(pairs)
    }
    return AttributeResult(attribute, source, groups, min_group_size, measurements, pair_values)


def describe_groups(result: AttributeResult) -> list[dict[str, Any]]:
    """JSON-ready rows, one per group, for check details and the report."""
    return [
        {
            "group": g.name,
            "n": g.n,
            "accuracy": g.accuracy,
            "ci": list(g.ci),
            "included": g.included,
            **({"top5": g.top5} if g.top5 is not None else {}),
        }
        for g in result.groups
    ]


def gap_note(result: AttributeResult) -> str:
    """``worst vs best`` group (the two that make the gap), plus the excluded groups."""
    inc = result.included
    parts = []
    if len(inc) >= 2:
        lo = min(inc, key=lambda g: g.accuracy)
        hi = max(inc, key=lambda g: g.accuracy)
        parts.append(f"{lo.describe()} vs {hi.describe()}, over {len(inc)} groups")
    else:
        parts.append(
            f"{len(inc)} group(s) with n >= {result.min_group_size}: no gap can be measured"
        )
    if result.excluded:
        parts.append(result.excluded_note())
    return "; ".join(parts)


def fairness_note(result: AttributeResult, measurement: Measurement) -> str:
    """What an SPD..AED value averages over, and what it left out."""
    d = measurement.details
    names = ", ".join(g.name for g in result.included)
    parts = [f"one-vs-rest mean over {d.get('classes', 0)} classes, groups {names or 'none'}"]
    left_out = d.get("left_out_tpr", 0) + d.get("left_out_fpr", 0)
    if left_out:
        parts.append(
            f"{left_out} (group, class) rates on fewer than {d['min_class_samples']} samples "
            "left out"
        )
    if result.excluded:
        parts.append(result.excluded_note())
    return "; ".join(parts)
