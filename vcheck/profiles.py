"""Threshold profiles: which metric must clear which threshold, per suite, from TOML.

Example (``fixtures/profiles/fmnist_cnn.toml``)::

    [accuracy]
    top1 = { min = 0.88 }
    ece = { max = 0.05 }
    class_priors = [0.1, 0.1, ...]          # optional: adds top1_prior_corrected

    [accuracy.slices.footwear]              # a must-pass slice
    classes = ["Sandal", "Sneaker", "Ankle boot"]   # or ids = [...] / ids_file = "x.txt"
    top1 = { min = 0.95 }

Each top-level table belongs to one suite and is parsed by that suite's parser, registered
in :data:`SUITE_TABLES` as ``"module:function"`` (imported only when a profile is read). A
parser takes the table (``{}`` when the profile has none) and a :class:`ProfileContext`, and
returns the suite's frozen settings; it validates every key, so a typo or a threshold that
can never fail is a usage error before any test runs, not a gate that silently never bites.

Shared checks for parsers: :func:`parse_threshold`, :func:`parse_thresholds`,
:func:`check_table`, :func:`check_keys`, :func:`positive_number`, :func:`positive_int`,
:func:`number_list`, :func:`string_list`, :func:`fraction`.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcheck.checks import Threshold
from vcheck.errors import InvalidArgument, UnknownNameError

# Suite table -> "module:parser". A new suite adds one line here.
SUITE_TABLES: dict[str, str] = {
    "accuracy": "vcheck.profiles:parse_accuracy",
    "soundness": "vcheck.profiles:parse_soundness",
    "baseline": "vcheck.report.baseline:parse_profile",
    "fairness": "vcheck.evaluate.fairness:parse_profile",
    "patch": "vcheck.evaluate.patch:parse_profile",
    "multilabel": "vcheck.evaluate.multilabel:parse_profile",
    "adversarial": "vcheck.evaluate.adversarial:parse_profile",
    "corruptions": "vcheck.evaluate.corruptions:parse_profile",
}


@dataclass(frozen=True)
class MetricSpec:
    """What a threshold on a metric may say: its direction and its range of values.

    ``higher_is_better`` metrics take ``{ min = t }`` with ``low < t <= high`` (a floor at or
    below ``low`` can never fail); the others take ``{ max = t }`` with ``low <= t < high``.
    """

    higher_is_better: bool
    low: float = 0.0
    high: float = 1.0

    def describe(self) -> str:
        high = "inf" if math.isinf(self.high) else f"{self.high:g}"
        return f"[{self.low:g}, {high}]"


PROPORTION = MetricSpec(higher_is_better=True)
ERROR_RATE = MetricSpec(higher_is_better=False)
NON_NEGATIVE_LOSS = MetricSpec(higher_is_better=False, low=0.0, high=math.inf)

ACCURACY_SPECS: dict[str, MetricSpec] = {
    "top1": PROPORTION,
    "top5": PROPORTION,
    "balanced_accuracy": PROPORTION,
    "worst_class_recall": PROPORTION,
    "auc_ovr_macro": PROPORTION,
    "ece": ERROR_RATE,
    "nll": NON_NEGATIVE_LOSS,
    "top1_prior_corrected": PROPORTION,
}
ACCURACY_METRICS = tuple(ACCURACY_SPECS)
SLICE_METRICS = ("top1", "top5", "worst_class_recall", "ece", "nll")
_SLICE_KEYS = ("ids", "ids_file", "classes")


@dataclass(frozen=True)
class ProfileContext:
    """What a table parser may need besides its table: where the profile is (for messages
    and relative paths) and the model's classes (for class names)."""

    path: Path
    classes: tuple[str, ...]

    def where(self, table: str) -> str:
        return f"[{table}] of {self.path}"


# -- shared checks -----------------------------------------------------------------------------
# Messages follow one template: ``name=value in [table] of FILE: what was expected``.


def _at(name: str, value: Any, where: str) -> str:
    return f"{name}={value!r}" + (f" in {where}" if where else "")


def check_table(name: str, value: Any, where: str = "") -> dict[str, Any]:
    """``value`` must be a TOML table."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"{_at(name, value, where)}: expected a table ([{name}] ...)")
    return value


def check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str, kind: str) -> None:
    """Every key of ``table`` is one of ``allowed`` (close names suggested)."""
    for key in table:
        if key not in allowed:
            raise UnknownNameError(kind, key, allowed, f"(in {where})")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def positive_number(name: str, value: Any, where: str = "") -> float:
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{_at(name, value, where)}: expected a positive number")
    return float(value)


def positive_int(name: str, value: Any, where: str = "", minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{_at(name, value, where)}: expected an integer >= {minimum}")
    return value


def fraction(name: str, value: Any, where: str = "", *, open_low: bool = False) -> float:
    """A number in [0, 1] (or (0, 1] with ``open_low``)."""
    ok = _is_number(value) and math.isfinite(value) and 0 <= value <= 1
    if not ok or (open_low and value == 0):
        span = "(0, 1]" if open_low else "[0, 1]"
        raise InvalidArgument(f"{_at(name, value, where)}: expected a number in {span}")
    return float(value)


def number_list(
    name: str, value: Any, where: str = "", *, minimum: float | None = None
) -> tuple[float, ...]:
    """A non-empty list of finite numbers (each >= ``minimum`` when given)."""
    if (
        not isinstance(value, list)
        or not value
        or not all(_is_number(v) and math.isfinite(v) for v in value)
        or (minimum is not None and any(v < minimum for v in value))
    ):
        floor = f" >= {minimum:g}" if minimum is not None else ""
        raise InvalidArgument(
            f"{_at(name, value, where)}: expected a non-empty list of numbers{floor}"
        )
    return tuple(float(v) for v in value)


def string_list(name: str, value: Any, where: str = "") -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{_at(name, value, where)}: expected a non-empty list of strings")
    return tuple(value)


def parse_threshold(
    name: str, value: Any, spec: MetricSpec | None = None, where: str = ""
) -> Threshold:
    """``{ min = t }`` or ``{ max = t }``, checked against the metric's direction and range.

    A threshold that can never fail (a floor at the bottom of the range), can never pass
    (beyond the range), points the wrong way (``max`` on accuracy) or is not finite is an
    :class:`~vcheck.errors.InvalidArgument` naming the metric and the fix.

    >>> parse_threshold("top1", {"min": 0.9}, PROPORTION)
    Threshold(value=0.9, direction='min')
    """
    at = _at(name, value, where)
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or next(iter(value)) not in ("min", "max")
        or not _is_number(next(iter(value.values())))
    ):
        raise InvalidArgument(f"{at}: expected {{ min = NUMBER }} or {{ max = NUMBER }}")
    ((direction, number),) = value.items()
    number = float(number)
    if not math.isfinite(number):
        raise InvalidArgument(f"{at}: the threshold must be a finite number")
    if spec is not None:
        wanted = "min" if spec.higher_is_better else "max"
        if direction != wanted:
            better = "higher" if spec.higher_is_better else "lower"
            raise InvalidArgument(
                f"{at}: {better} is better for {name}, so its threshold is a {wanted}imum; "
                f"write {{ {wanted} = {number:g} }}"
            )
        if direction == "min" and not spec.low < number <= spec.high:
            never = "can never fail" if number <= spec.low else "can never pass"
            raise InvalidArgument(
                f"{at}: {name} lies in {spec.describe()}, so this floor {never}; "
                f"pick a value in ({spec.low:g}, {spec.high:g}]"
            )
        if direction == "max" and not spec.low <= number < spec.high:
            never = "can never fail" if number >= spec.high else "can never pass"
            raise InvalidArgument(
                f"{at}: {name} lies in {spec.describe()}, so this ceiling {never}; "
                f"pick a value in [{spec.low:g}, {spec.high:g})"
            )
    return Threshold(number, direction)


def parse_thresholds(
    table: Mapping[str, Any],
    specs: Mapping[str, MetricSpec],
    where: str,
    skip: tuple[str, ...] = (),
) -> dict[str, Threshold]:
    """Thresholds of ``table`` (keys in ``skip`` aside), each metric known and valid."""
    out = {}
    for key, value in table.items():
        if key in skip:
            continue
        if key not in specs:
            raise UnknownNameError("metric", key, tuple(specs) + skip, f"(in {where})")
        out[key] = parse_threshold(key, value, specs[key], where)
    return out


# -- accuracy ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceSpec:
    """A named subset of an eval set, by sample ids or by classes, with its own thresholds."""

    name: str
    thresholds: dict[str, Threshold]
    ids: frozenset[str] | None = None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AccuracyProfile:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    class_priors: tuple[float, ...] | None = None
    slices: tuple[SliceSpec, ...] = ()
    published: Any = None  # vcheck.models.published.Published: the numbers floors come from


def _slice(name: str, table: Any, ctx: ProfileContext) -> SliceSpec:
    where = f"[accuracy.slices.{name}] of {ctx.path}"
    table = check_table(f"accuracy.slices.{name}", table, str(ctx.path))
    given = [k for k in _SLICE_KEYS if k in table]
    if len(given) != 1:
        raise InvalidArgument(f"{where}: give exactly one of {', '.join(_SLICE_KEYS)}")
    ids = None
    slice_classes = None
    if "ids" in table:
        raw_ids = table["ids"]
        if not isinstance(raw_ids, list) or not all(isinstance(i, str | int) for i in raw_ids):
            raise InvalidArgument(f"ids={raw_ids!r} in {where}: expected a list of sample ids")
        ids = frozenset(str(i) for i in raw_ids)
    elif "ids_file" in table:
        if not isinstance(table["ids_file"], str):
            raise InvalidArgument(f"ids_file={table['ids_file']!r} in {where}: expected a path")
        path = (ctx.path.parent / table["ids_file"]).resolve()
        if not path.is_file():
            raise InvalidArgument(f"{where}: ids_file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{where}: cannot read ids_file {path} ({exc})") from None
        lines = (ln.split("#", 1)[0].strip() for ln in text.splitlines())
        ids = frozenset(ln for ln in lines if ln)
    else:
        slice_classes = string_list("classes", table["classes"], where)
        for c in slice_classes:
            if c not in ctx.classes:
                raise UnknownNameError("class", c, ctx.classes, f"(in {where})")
    if ids is not None and not ids:
        raise InvalidArgument(f"{where}: the slice names no sample ids")
    specs = {k: ACCURACY_SPECS[k] for k in SLICE_METRICS}
    thresholds = parse_thresholds(table, specs, where, skip=_SLICE_KEYS)
    return SliceSpec(name, thresholds, ids, slice_classes)


def parse_accuracy(table: dict[str, Any], ctx: ProfileContext) -> AccuracyProfile:
    where = ctx.where("accuracy")
    acc = dict(table)
    slices_table = check_table("slices", acc.pop("slices", {}), where)
    priors = acc.pop("class_priors", None)
    published = acc.pop("published", None)
    if published is not None:
        from vcheck.models.published import parse_published

        published = parse_published(published, where)
    skip = ("class_priors", "slices", "published")
    thresholds = parse_thresholds(acc, ACCURACY_SPECS, where, skip=skip)
    if priors is not None:
        n = len(ctx.classes)
        if (
            not isinstance(priors, list)
            or len(priors) != n
            or not all(_is_number(p) and math.isfinite(p) and p > 0 for p in priors)
        ):
            raise InvalidArgument(
                f"class_priors={priors!r} in {where}: expected {n} positive numbers, one per class"
            )
        total = float(sum(priors))
        priors = tuple(float(p) / total for p in priors)
    elif "top1_prior_corrected" in thresholds:
        raise InvalidArgument(f"{where}: top1_prior_corrected needs class_priors in [accuracy]")
    slices = tuple(_slice(n, t, ctx) for n, t in slices_table.items())
    return AccuracyProfile(thresholds, priors, slices, published)


# -- soundness ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoundnessProfile:
    """Per-instance verifier budget for the soundness suite."""

    timeout: float = 30.0
    bab_max_domains: int = 50
    model_eps: float = 1 / 255  # L-inf radius in pixel space for the model-under-test checks
    model_samples: int = 100
    # Largest share of a network's instances a verifier may leave unanswered ("error" other
    # than a refusal by design, or "timeout"); 0 under --strict.
    max_unanswered: float = 0.1
    # A zoo model small enough for CROWN, checked beside the model under test at model_eps
    # (a large model gets IBP, which certifies nothing, so its check alone would pass
    # vacuously): its certified accuracy must reach the floor and PGD must break none of its
    # certified samples. "" leaves it out. fmnist_mlp measured 0.84 at 1/255 (seed 0).
    control_model: str = "fmnist_mlp"
    control_min_certified: float = 0.6


def parse_soundness(table: dict[str, Any], ctx: ProfileContext) -> SoundnessProfile:
    where = ctx.where("soundness")
    allowed = (
        "timeout",
        "bab_max_domains",
        "model_eps",
        "model_samples",
        "max_unanswered",
        "control_model",
        "control_min_certified",
    )
    check_keys(table, allowed, where, "soundness setting")
    d = SoundnessProfile()
    control = table.get("control_model", d.control_model)
    if control != "":
        from vcheck.models.zoo import ZOO

        if control not in ZOO:
            raise UnknownNameError(
                "control_model", str(control), sorted(ZOO), f'(in {where}; "" leaves it out)'
            )
    return SoundnessProfile(
        timeout=positive_number("timeout", table.get("timeout", d.timeout), where),
        bab_max_domains=positive_int(
            "bab_max_domains", table.get("bab_max_domains", d.bab_max_domains), where
        ),
        model_eps=fraction("model_eps", table.get("model_eps", d.model_eps), where, open_low=True),
        model_samples=positive_int(
            "model_samples", table.get("model_samples", d.model_samples), where
        ),
        max_unanswered=fraction(
            "max_unanswered", table.get("max_unanswered", d.max_unanswered), where
        ),
        control_model=control,
        control_min_certified=fraction(
            "control_min_certified",
            table.get("control_min_certified", d.control_min_certified),
            where,
        ),
    )


# -- the profile -------------------------------------------------------------------------------


def _parser(suite: str) -> Callable[[dict[str, Any], ProfileContext], Any]:
    module, _, name = SUITE_TABLES[suite].partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Profile:
    """A parsed profile: one settings object per suite table (defaults where absent)."""

    path: Path | None
    sha256: str | None
    tables: Mapping[str, Any] = field(default_factory=dict)

    def table(self, suite: str) -> Any:
        """The parsed ``[suite]`` table (its defaults when the profile has none)."""
        return self.tables[suite]

    @property
    def accuracy(self) -> AccuracyProfile:
        return self.tables["accuracy"]

    @property
    def soundness(self) -> SoundnessProfile:
        return self.tables["soundness"]

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "sha256": self.sha256}


def load_profile(path: Path | None, classes: tuple[str, ...]) -> Profile:
    """Read and validate a profile; ``None`` gives every suite's defaults (informational)."""
    if path is None:
        ctx = ProfileContext(Path("<no profile>"), tuple(classes))
        return Profile(None, None, {s: _parser(s)({}, ctx) for s in SUITE_TABLES})
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"threshold profile {path} is a directory; pass --profile FILE.toml")
    if not path.is_file():
        raise InvalidArgument(f"threshold profile {path} does not exist; pass --profile PATH")
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"cannot read threshold profile {path} ({exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"threshold profile {path} is not valid TOML: {exc}") from None
    check_keys(data, tuple(SUITE_TABLES), f"{path}", "profile table")
    ctx = ProfileContext(path.resolve(), tuple(classes))
    tables = {
        suite: _parser(suite)(check_table(suite, data.get(suite, {}), str(path)), ctx)
        for suite in SUITE_TABLES
    }
    return Profile(path.resolve(), hashlib.sha256(raw).hexdigest(), tables)
