"""Multi-label measurements (specs/multilabel.md) from one set of cached predictions, and
the ``[multilabel]`` profile table that declares the label sets.

A label set is a file keyed by image file name (ReaL or Shankar et al. format, see
:mod:`vcheck.data.label_sets`) attached to one eval set; a slice is a list of file names
scored against one label set, optionally with mistake metadata for error attribution::

    [multilabel]
    f1_threshold = 0.5                      # sigmoid models: threshold of f1/subset/hamming

    [multilabel.label_sets.real]
    eval_set = "imagenet_val"               # default: the model's first eval set
    format = "real"                         # or "shankar"
    path = "../imagenet/real.json"          # relative to the profile
    file_names = "ILSVRC2012_val_{index:08d}.JPEG"   # the default, with num_files = 50000
    top1 = { min = 0.80 }

    [multilabel.slices.imagenet_m]
    label_set = "shankar"
    files = "imagenet_m.json"               # JSON list, or one file name per line
    mistakes = "greedy_soups_mistakes.json" # optional: errors by category and severity
    top1 = { min = 0.95 }

Files are read and validated when the profile is parsed, so a malformed one stops the run
with a usage error before any test. Every proportion carries a Wilson interval; means of
fractions, class averages, AUC, AP, F1 and Hamming loss a bootstrap interval.

Public names: parse_profile, MultiLabelProfile, LabelSetSpec, SliceSpec, LabelSetEvaluator,
SliceEvaluator, label_set_metrics, construction_mismatch, slug, REAL_METRICS, SHANKAR_METRICS,
SIGMOID_METRICS, SLICE_METRICS.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcheck.checks import Measurement, Threshold
from vcheck.data import label_sets as L
from vcheck.data.evalset import EvalSet
from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError
from vcheck.functional import multilabel as F
from vcheck.functional.classification import weighted_auc, weighted_auc_parts
from vcheck.functional.intervals import bootstrap_interval, resample_weights, wilson_interval
from vcheck.predictions import Predictions
from vcheck.profiles import (
    ERROR_RATE,
    PROPORTION,
    MetricSpec,
    ProfileContext,
    check_keys,
    check_table,
    fraction,
    parse_thresholds,
    positive_int,
)

FORMATS = ("real", "shankar")
# Metrics per label-set format; forgiven_fraction is informational (no better direction).
REAL_METRICS = (
    "top1",
    "top5",
    "original_top1",
    "forgiven_fraction",
    "vartopk_set_match",
    "vartopk_recovered",
)
SHANKAR_METRICS = (
    "top1_class_avg",
    "top1_correct",
    "original_top1",
    "forgiven_fraction",
    "vartopk_set_match",
    "vartopk_recovered",
)
# Multi-label (sigmoid) models, on complete label sets (ReaL format).
SIGMOID_METRICS = (
    "auc_macro",
    "map",
    "f1_micro",
    "f1_macro",
    "subset_accuracy",
    "hamming_loss",
    "worst_class_auc",
)
SLICE_METRICS = ("top1", "original_top1", "forgiven_fraction")
SPECS: dict[str, MetricSpec] = {
    **{m: PROPORTION for m in (*REAL_METRICS, *SHANKAR_METRICS, *SIGMOID_METRICS)},
    "hamming_loss": ERROR_RATE,
}
INFORMATIONAL = ("forgiven_fraction",)
DESCRIPTIONS = {
    "top1": "top-1 in the label set",
    "top5": "any of the top 5 in the label set",
    "top1_class_avg": "definition (a): top-1 in correct ∪ unclear, averaged over original classes",
    "top1_correct": "definition (b): top-1 in correct, averaged over images",
    "original_top1": "top-1 equals the original label, on the same images",
    "forgiven_fraction": "original-label errors whose top-1 the label set accepts",
    "vartopk_set_match": "k = |label set|: every label among the top k",
    "vartopk_recovered": "k = |label set|: mean fraction of the labels among the top k",
    "auc_macro": "mean over classes of the per-class ROC AUC",
    "map": "mean over classes of the per-class average precision",
    "f1_micro": "F1 over all (image, class) decisions at f1_threshold",
    "f1_macro": "mean over classes of F1 at f1_threshold",
    "subset_accuracy": "scores >= f1_threshold are exactly the label set",
    "hamming_loss": "fraction of wrong (image, class) decisions at f1_threshold",
    "worst_class_auc": "ROC AUC of the class with the lowest one",
}
_LABEL_SET_KEYS = ("eval_set", "format", "path", "file_names", "num_files")
_SLICE_KEYS = ("label_set", "files", "mistakes")


@dataclass(frozen=True)
class LabelSetSpec:
    """One label set of the profile, its file already read and validated."""

    name: str
    format: str
    path: Path
    eval_set: str | None
    universe: L.FileUniverse
    thresholds: dict[str, Threshold]
    entries: Mapping[str, Any] = field(compare=False, repr=False)

    def metrics(self) -> tuple[str, ...]:
        return REAL_METRICS if self.format == "real" else SHANKAR_METRICS


@dataclass(frozen=True)
class SliceSpec:
    """A named slice (file names) scored against a label set; optional mistake metadata."""

    name: str
    label_set: str
    path: Path
    files: tuple[str, ...]
    thresholds: dict[str, Threshold]
    mistakes_path: Path | None = None
    mistakes: pd.DataFrame | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class MultiLabelProfile:
    label_sets: dict[str, LabelSetSpec] = field(default_factory=dict)
    slices: dict[str, SliceSpec] = field(default_factory=dict)
    f1_threshold: float = 0.5


def _file(ctx: ProfileContext, key: str, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            f"{key}={value!r} in {where}: expected a path (relative to the profile)"
        )
    return (ctx.path.parent / value).resolve()


def _read(load: Callable[[], Any], where: str) -> Any:
    """Run a loader; its error names the file and entry, this adds the profile table."""
    try:
        return load()
    except (CorruptArtefactError, MissingArtefactError) as exc:
        raise type(exc)(f"{exc} (named in {where})") from None


def _label_set(name: str, table: Any, ctx: ProfileContext) -> LabelSetSpec:
    where = f"[multilabel.label_sets.{name}] of {ctx.path}"
    table = dict(check_table(f"multilabel.label_sets.{name}", table, str(ctx.path)))
    fmt = table.get("format")
    if fmt not in FORMATS:
        raise InvalidArgument(f"format={fmt!r} in {where}: expected one of {', '.join(FORMATS)}")
    if "path" not in table:
        raise InvalidArgument(f'{where}: path = "label file" is missing')
    path = _file(ctx, "path", table["path"], where)
    eval_set = table.get("eval_set")
    if eval_set is not None and (not isinstance(eval_set, str) or not eval_set):
        raise InvalidArgument(f"eval_set={eval_set!r} in {where}: expected an eval set name")
    default = L.IMAGENET_VAL
    pattern = table.get("file_names", default.pattern)
    count = positive_int("num_files", table.get("num_files", default.count), where)
    if not isinstance(pattern, str):
        raise InvalidArgument(f"file_names={pattern!r} in {where}: expected a pattern string")
    try:
        universe = L.FileUniverse(pattern, count)
    except ValueError as exc:
        raise InvalidArgument(f"{exc} in {where}") from None
    metrics = REAL_METRICS + SIGMOID_METRICS if fmt == "real" else SHANKAR_METRICS
    specs = {m: SPECS[m] for m in metrics if m not in INFORMATIONAL}
    if len(ctx.classes) <= 5:
        specs.pop("top5", None)
    thresholds = parse_thresholds(table, specs, where, skip=_LABEL_SET_KEYS)
    if fmt == "real":
        entries = _read(lambda: L.load_real(path, len(ctx.classes), universe), where)
    else:
        entries = _read(lambda: L.load_shankar(path, ctx.classes, universe), where)
    return LabelSetSpec(name, fmt, path, eval_set, universe, thresholds, entries)


def _slice(name: str, table: Any, ctx: ProfileContext, sets: dict[str, LabelSetSpec]) -> SliceSpec:
    where = f"[multilabel.slices.{name}] of {ctx.path}"
    table = dict(check_table(f"multilabel.slices.{name}", table, str(ctx.path)))
    label_set = table.get("label_set")
    if label_set not in sets:
        from vcheck.errors import UnknownNameError

        raise UnknownNameError(
            "label set",
            str(label_set),
            sets,
            f"(label_set in {where}; declare it in [multilabel.label_sets.NAME])",
        )
    universe = sets[label_set].universe
    if "files" not in table:
        raise InvalidArgument(f'{where}: files = "file-name list" is missing')
    path = _file(ctx, "files", table["files"], where)
    files = _read(lambda: L.load_file_list(path, universe), where)
    mistakes_path = mistakes = None
    if "mistakes" in table:
        mistakes_path = _file(ctx, "mistakes", table["mistakes"], where)
        mistakes = _read(lambda: L.load_mistakes(mistakes_path, len(ctx.classes), universe), where)
    specs = {m: SPECS[m] for m in SLICE_METRICS if m not in INFORMATIONAL}
    thresholds = parse_thresholds(table, specs, where, skip=_SLICE_KEYS)
    return SliceSpec(name, label_set, path, files, thresholds, mistakes_path, mistakes)


def parse_profile(table: dict[str, Any], ctx: ProfileContext) -> MultiLabelProfile:
    """The ``[multilabel]`` table: label sets, slices and the sigmoid decision threshold."""
    where = ctx.where("multilabel")
    check_keys(table, ("f1_threshold", "label_sets", "slices"), where, "multilabel setting")
    f1_threshold = fraction("f1_threshold", table.get("f1_threshold", 0.5), where, open_low=True)
    sets_table = check_table("label_sets", table.get("label_sets", {}), where)
    sets = {name: _label_set(name, t, ctx) for name, t in sets_table.items()}
    slices_table = check_table("slices", table.get("slices", {}), where)
    slices = {name: _slice(name, t, ctx, sets) for name, t in slices_table.items()}
    return MultiLabelProfile(sets, slices, f1_threshold)


def label_set_metrics(spec: LabelSetSpec, output_kind: str, num_classes: int) -> list[str]:
    """The metrics recorded for ``spec``: its format's, plus the sigmoid metrics for a
    multi-label model (or when the profile gates one of them)."""
    names = list(spec.metrics())
    if num_classes <= 5 and "top5" in names:
        names.remove("top5")
    if spec.format == "real" and (
        output_kind == "sigmoid" or any(m in spec.thresholds for m in SIGMOID_METRICS)
    ):
        names += SIGMOID_METRICS
    return names


def construction_mismatch(eval_set: EvalSet, spec: LabelSetSpec) -> str | None:
    """For an eval set whose label sets are known by construction (``eval_set.label_sets``,
    e.g. ``fmnist_multi``): the first file whose entry says otherwise, as a message."""
    if eval_set.label_sets is None:
        return None
    for name, truth in zip(L.file_names(eval_set.ids), eval_set.label_sets, strict=True):
        entry = spec.entries.get(name)
        if entry is None:
            continue
        if spec.format == "real":
            given = set(entry)
        else:
            given = set() if entry.excluded else set(entry.correct | entry.unclear)
        if given != set(truth):
            return (
                f"label set {spec.name}: {spec.path} does not describe {eval_set.name} "
                f"({eval_set.source}): {name} has classes {sorted(given)} there but "
                f"{sorted(truth)} by construction; the file was written for other images "
                "(for fmnist_multi: python -m vcheck.data.multi_object --out DIR)"
            )
    return None


# -- evaluation ------------------------------------------------------------------------------------


def slug(text: str) -> str:
    """``text`` as a metric-name fragment: 'Fine-grained error' -> 'fine_grained_error'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class LabelSetEvaluator:
    """Metrics of one label set on one eval set's cached predictions (memoised).

    Samples are matched by file name; matched samples whose set is empty (ReaL) or that are
    problematic or have nothing acceptable (Shankar) are excluded and counted.

    Args:
        predictions: the cached forward pass over the eval set.
        spec: the label set.
        classes: the model's class names.
        f1_threshold: decision threshold of the sigmoid metrics.
        resamples, seed, confidence: the intervals' settings.
    """

    def __init__(
        self,
        predictions: Predictions,
        spec: LabelSetSpec,
        classes: tuple[str, ...],
        *,
        f1_threshold: float = 0.5,
        resamples: int = 1000,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> None:
        self.spec, self.classes = spec, classes
        self.f1_threshold = f1_threshold
        self.resamples, self.seed, self.confidence = resamples, seed, confidence
        names = L.file_names(predictions.ids)
        matched = [i for i, n in enumerate(names) if n in spec.entries]
        if spec.format == "real":
            keep = [i for i in matched if spec.entries[names[i]]]
            member = F.membership([spec.entries[names[i]] for i in keep], len(classes))
            accept = member
        else:
            keep = [i for i in matched if not spec.entries[names[i]].excluded]
            entries = [spec.entries[names[i]] for i in keep]
            member = F.membership([e.correct for e in entries], len(classes))
            accept = member | F.membership([e.unclear for e in entries], len(classes))
        self.all_files = set(names)
        self.rows = np.asarray(keep, dtype=np.int64)
        self.files = [names[i] for i in keep]
        self.counts = {
            "samples": len(names),
            "matched": len(matched),
            "excluded": len(matched) - len(keep),
            "unmatched": len(names) - len(matched),
        }
        self.member, self.accept = member, accept
        self.scores = predictions.logits.double().numpy()[self.rows]
        self.probs = predictions.probs[self.rows]
        self.original = predictions.labels.numpy()[self.rows]
        self.top1 = np.argmax(self.scores, axis=1) if len(self.rows) else np.empty(0, int)
        self.n = len(self.rows)

    def subset(self, files: frozenset[str] | set[str]) -> np.ndarray:
        """Positions (into this evaluator's samples) of the images named in ``files``."""
        return np.flatnonzero([f in files for f in self.files])

    # -- per-image outcomes -------------------------------------------------------------------
    @functools.cached_property
    def accepted(self) -> np.ndarray:
        """(n,) bool: the top-1 is acceptable (ReaL: in the set; Shankar: correct ∪ unclear)."""
        return self.accept[np.arange(self.n), self.top1] if self.n else np.zeros(0, bool)

    @functools.cached_property
    def original_correct(self) -> np.ndarray:
        return self.top1 == self.original

    def _details(self, metric: str, **extra: Any) -> dict[str, Any]:
        return {
            "label_set": self.spec.name,
            "format": self.spec.format,
            "file": str(self.spec.path),
            "definition": DESCRIPTIONS.get(metric, metric.replace("_", " ")),
            **self.counts,
            **extra,
        }

    def proportion(self, correct: np.ndarray, metric: str, **details: Any) -> Measurement:
        k, n = int(correct.sum()), len(correct)
        value = k / n if n else math.nan
        ci = wilson_interval(k, n, self.confidence)
        return Measurement(value, n, ci, "wilson", self._details(metric, successes=k, **details))

    def bootstrap(
        self, metric: str, statistic: Callable[[np.ndarray], float], n: int, **details: Any
    ) -> Measurement:
        value = statistic(np.arange(n)) if n else math.nan
        seed = self.seed * 1_000_003 + zlib.crc32(f"{self.spec.name}/{metric}".encode())
        result = bootstrap_interval(
            statistic, n, resamples=self.resamples, seed=seed, confidence=self.confidence
        )
        if result.note:
            details["ci_note"] = result.note
        return Measurement(value, n, result.ci, result.method, self._details(metric, **details))

    def bootstrap_weighted(
        self,
        metric: str,
        statistic: Callable[[np.ndarray], np.ndarray],
        *,
        confidence: float | None = None,
        **details: Any,
    ) -> Measurement:
        """Like :meth:`bootstrap` for metrics that take (B, N) resample weights and return (B,):
        one array operation per batch of resamples instead of one scikit-learn call each.
        ``confidence`` overrides the run's (a simultaneous interval asks for more)."""
        n = self.n
        value = float(statistic(np.ones((1, n)))[0]) if n else math.nan
        seed = self.seed * 1_000_003 + zlib.crc32(f"{self.spec.name}/{metric}".encode())
        result = bootstrap_interval(
            lambda idx: statistic(resample_weights(idx, n)),
            n,
            resamples=self.resamples,
            seed=seed,
            confidence=self.confidence if confidence is None else confidence,
            vectorized=True,
        )
        if result.note:
            details["ci_note"] = result.note
        return Measurement(value, n, result.ci, result.method, self._details(metric, **details))

    @functools.cache  # noqa: B019 - one evaluator per label set, living for the session
    def measure(self, metric: str) -> Measurement:
        try:
            compute = getattr(self, f"_{metric}")
        except AttributeError:
            raise ValueError(f"Unknown multi-label metric {metric!r}") from None
        return compute()

    # -- single-label models judged against label sets -----------------------------------------
    def _top1(self) -> Measurement:
        return self.proportion(self.accepted, "top1")

    def _top5(self) -> Measurement:
        return self.proportion(F.topk_in_set(self.scores, self.member, 5), "top5")

    def _top1_correct(self) -> Measurement:
        hit = self.member[np.arange(self.n), self.top1] if self.n else np.zeros(0, bool)
        return self.proportion(hit, "top1_correct")

    def _top1_class_avg(self) -> Measurement:
        accepted, original = self.accepted.astype(float), self.original
        return self.bootstrap(
            "top1_class_avg",
            lambda i: F.class_averaged(accepted[i], original[i]),
            self.n,
            classes_present=len(np.unique(original)),
        )

    def _original_top1(self) -> Measurement:
        return self.proportion(self.original_correct, "original_top1")

    def _forgiven_fraction(self) -> Measurement:
        errors = ~self.original_correct
        forgiven = self.accepted[errors]
        return self.proportion(
            forgiven,
            "forgiven_fraction",
            forgiven=int(forgiven.sum()),
            original_errors=int(errors.sum()),
        )

    @functools.cached_property
    def _variable_topk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        match, recovered = F.variable_topk(self.scores, self.member)
        has_labels = self.member.any(axis=1)
        return match[has_labels], recovered[has_labels], has_labels

    def _vartopk_set_match(self) -> Measurement:
        match, _, has = self._variable_topk
        return self.proportion(match, "vartopk_set_match", without_labels=int((~has).sum()))

    def _vartopk_recovered(self) -> Measurement:
        _, recovered, has = self._variable_topk
        return self.bootstrap(
            "vartopk_recovered",
            lambda i: float(recovered[i].mean()),
            len(recovered),
            without_labels=int((~has).sum()),
        )

    # -- multi-label (sigmoid) models ------------------------------------------------------------
    def _per_class(self, values: np.ndarray) -> dict[str, float | None]:
        return {
            c: round(float(v), 6) if np.isfinite(v) else None
            for c, v in zip(self.classes, values, strict=True)
        }

    @functools.cached_property
    def per_class_auc(self) -> np.ndarray:
        return F.per_class_auc(self.probs, self.member)

    @functools.cached_property
    def per_class_ap(self) -> np.ndarray:
        return F.per_class_average_precision(self.probs, self.member)

    def _auc_macro(self) -> Measurement:
        parts = [
            weighted_auc_parts(self.probs[:, c], self.member[:, c])
            for c in range(len(self.classes))
        ]
        m = self.bootstrap_weighted(
            "auc_macro",
            lambda w: F.weighted_macro(weighted_auc(w, *p) for p in parts),
            per_class_auc=self._per_class(self.per_class_auc),
        )
        return Measurement(F.nan_mean(self.per_class_auc), m.n, m.ci, m.ci_method, m.details)

    def _map(self) -> Measurement:
        parts = [
            F.weighted_ap_parts(self.probs[:, c], self.member[:, c])
            for c in range(len(self.classes))
        ]
        m = self.bootstrap_weighted(
            "map",
            lambda w: F.weighted_macro(F.weighted_average_precision(w, *p) for p in parts),
            per_class_ap=self._per_class(self.per_class_ap),
        )
        return Measurement(F.nan_mean(self.per_class_ap), m.n, m.ci, m.ci_method, m.details)

    def _f1(self, average: str) -> Measurement:
        probs, member, t = self.probs, self.member, self.f1_threshold
        m = self.bootstrap_weighted(
            f"f1_{average}", lambda w: F.weighted_f1(w, probs, member, t, average), threshold=t
        )
        value = F.f1(probs, member, t, average) if self.n else math.nan
        return Measurement(value, m.n, m.ci, m.ci_method, m.details)

    def _f1_micro(self) -> Measurement:
        return self._f1("micro")

    def _f1_macro(self) -> Measurement:
        return self._f1("macro")

    def _subset_accuracy(self) -> Measurement:
        exact = F.subset_accuracy(self.probs, self.member, self.f1_threshold)
        return self.proportion(exact, "subset_accuracy", threshold=self.f1_threshold)

    def _hamming_loss(self) -> Measurement:
        probs, member, t = self.probs, self.member, self.f1_threshold
        m = self.bootstrap_weighted(
            "hamming_loss", lambda w: F.weighted_hamming(w, probs, member, t), threshold=t
        )
        value = F.hamming(probs, member, t) if self.n else math.nan
        return Measurement(value, m.n, m.ci, m.ci_method, m.details)

    def _worst_class_auc(self) -> Measurement:
        auc = self.per_class_auc
        if not np.isfinite(auc).any():
            return Measurement(math.nan, self.n, details=self._details("worst_class_auc"))
        worst = int(np.nanargmin(auc))
        parts = weighted_auc_parts(self.probs[:, worst], self.member[:, worst])
        # Bonferroni over the classes with an AUC, as worst_class_recall: which class comes
        # out worst is itself chance, and at the run's own level the interval covered the
        # true worst AUC 85% of the time when classes tie (95% wanted; 97% adjusted).
        classes = int(np.isfinite(auc).sum())
        m = self.bootstrap_weighted(
            "worst_class_auc",
            lambda w: weighted_auc(w, *parts),
            confidence=1 - (1 - self.confidence) / classes,
            worst_class=self.classes[worst],
            per_class_auc=self._per_class(auc),
            simultaneous_over=classes,
        )
        return Measurement(float(auc[worst]), m.n, m.ci, m.ci_method, m.details)

    # -- slices and error attribution ------------------------------------------------------------
    def on_slice(self, spec: SliceSpec) -> SliceEvaluator:
        return SliceEvaluator(self, spec)


NO_RECORD = "unattributed: no recorded mistake"
OTHER_PREDICTION = "unattributed: other prediction"


class SliceEvaluator:
    """A label set's outcomes restricted to a slice's files, and its error attribution."""

    def __init__(self, parent: LabelSetEvaluator, spec: SliceSpec) -> None:
        self.parent, self.spec = parent, spec
        wanted = set(spec.files)
        self.idx = parent.subset(wanted)
        self.n = len(self.idx)
        in_eval_set = len(wanted & parent.all_files)
        self.counts = {
            "slice_files": len(wanted),
            "slice_files_in_eval_set": in_eval_set,
            "slice_files_excluded": in_eval_set - self.n,
        }

    def measure(self, metric: str) -> Measurement:
        p = self.parent
        if metric == "top1":
            m = p.proportion(p.accepted[self.idx], "top1")
        elif metric == "original_top1":
            m = p.proportion(p.original_correct[self.idx], "original_top1")
        elif metric == "forgiven_fraction":
            errors = ~p.original_correct[self.idx]
            forgiven = p.accepted[self.idx][errors]
            m = p.proportion(
                forgiven,
                "forgiven_fraction",
                forgiven=int(forgiven.sum()),
                original_errors=int(errors.sum()),
            )
        else:
            raise ValueError(f"Unknown slice metric {metric!r}")
        details = {**m.details, "slice": self.spec.name, "slice_file": str(self.spec.path)}
        return Measurement(m.value, m.n, m.ci, m.ci_method, {**details, **self.counts})

    def errors(self) -> pd.DataFrame:
        """One row per error of the model on the slice (top-1 not accepted): file, top-1,
        and the recorded category and severity where the recorded top prediction is the
        model's (otherwise :data:`NO_RECORD` or :data:`OTHER_PREDICTION`)."""
        p = self.parent
        wrong = self.idx[~p.accepted[self.idx]]
        table = pd.DataFrame({"file": [p.files[i] for i in wrong], "top1": p.top1[wrong]})
        table["category"] = table["severity"] = NO_RECORD
        if self.spec.mistakes is not None and len(table):
            recorded = self.spec.mistakes.reindex(table["file"])
            known = recorded["top_prediction"].notna().to_numpy()
            same = recorded["top_prediction"].to_numpy() == table["top1"].to_numpy()
            table.loc[known & ~same, ["category", "severity"]] = OTHER_PREDICTION
            for column in ("category", "severity"):
                table.loc[same, column] = recorded[column].astype(object).to_numpy()[same]
        return table

    def error_shares(self, confidence: float = 0.95) -> dict[str, Measurement]:
        """``errors_<category>``, ``errors_<severity>`` (those of the mistake metadata) and
        the two unattributed shares: each a fraction of the model's errors on the slice."""
        errors = self.errors()
        n = len(errors)
        mistakes = self.spec.mistakes if self.spec.mistakes is not None else pd.DataFrame()
        groups = [
            *(("category", str(c)) for c in mistakes.get("category", pd.Series()).unique()),
            *(("severity", str(s)) for s in mistakes.get("severity", pd.Series()).unique()),
            ("category", NO_RECORD),
            ("category", OTHER_PREDICTION),
        ]
        out = {}
        for column, value in groups:
            k = int((errors[column] == value).sum())
            details = {column: value, "errors": k, "slice_errors": n}
            details["mistakes"] = str(self.spec.mistakes_path)
            out[f"errors_{slug(value)}"] = Measurement(
                k / n if n else math.nan, n, wilson_interval(k, n, confidence), "wilson", details
            )
        return out

    def attribution(self) -> pd.DataFrame:
        """Errors counted by (category, severity), most frequent first, with their share."""
        errors = self.errors()
        counts = errors.groupby(["category", "severity"]).size().rename("errors").reset_index()
        counts["share"] = counts["errors"] / max(len(errors), 1)
        return counts.sort_values(
            ["errors", "category"], ascending=[False, True], ignore_index=True
        )
