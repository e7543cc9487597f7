"""``--baseline metrics.json``: non-regression checks against an earlier release's run.

Every metric present in both runs (same suite, metric, eval set and slice) becomes a check of
suite ``baseline`` named ``<suite>.<metric>``: its value is the change (current minus
baseline), and it fails when the metric got worse by more than the profile's tolerance
(direction from the metric's threshold in either run; a metric with no direction is
recorded as informational). The interval of the change combines both runs' intervals by
MOVER (Zou & Donner's method of variance estimates recovery), which treats the runs as
independent; where both runs stored per-sample top-1 correctness on the same samples, the
exact McNemar test (``scipy.stats.binomtest`` on the discordant pairs, one-sided: is the
current model worse?) adds a paired check ``<suite>.top1.mcnemar_p`` that fails below the
profile's ``mcnemar_alpha``.

A baseline measured on different data (an eval-set fingerprint differs: other files, other
``--max-samples`` or seed) is refused before any test: the comparison would be meaningless.

Profile table::

    [baseline]
    tolerance = 0.01            # allowed worsening of any metric, in its own units
    mcnemar_alpha = 0.05        # paired test on per-sample top-1 correctness
    [baseline.metrics]          # per-metric tolerances: "suite.metric" = number
    "accuracy.top1" = 0.005
    "accuracy.nll" = 0.05

Public names: :class:`BaselineProfile`, :func:`parse_profile`, :func:`load_baseline`,
:func:`check_eval_sets`, :func:`compare`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcheck.checks import CheckResult, Threshold
from vcheck.errors import InvalidArgument

SUITE = "baseline"
_KEYS = ("tolerance", "mcnemar_alpha", "metrics")


@dataclass(frozen=True)
class BaselineProfile:
    """Tolerances of the non-regression checks (the profile's ``[baseline]`` table)."""

    tolerance: float = 0.01
    mcnemar_alpha: float = 0.05
    metrics: Mapping[str, float] = field(default_factory=dict)

    def tolerance_for(self, suite: str, metric: str) -> float:
        """Per-metric tolerance (``suite.metric``, or ``suite.base`` for ``base[param]``)."""
        name = f"{suite}.{metric}"
        base = name.split("[", 1)[0]
        return self.metrics.get(name, self.metrics.get(base, self.tolerance))


def parse_profile(table: dict[str, Any], ctx) -> BaselineProfile:
    from vcheck.profiles import SUITE_TABLES, check_keys, check_table, fraction

    where = ctx.where("baseline")
    check_keys(table, _KEYS, where, "baseline setting")
    d = BaselineProfile()
    tolerance = _tolerance("tolerance", table.get("tolerance", d.tolerance), where)
    alpha = fraction("mcnemar_alpha", table.get("mcnemar_alpha", d.mcnemar_alpha), where,
                     open_low=True)  # fmt: skip
    if alpha > 0.5:
        raise InvalidArgument(
            f"mcnemar_alpha={alpha!r} in {where}: expected a significance level in (0, 0.5], "
            "e.g. 0.05"
        )
    metrics = {}
    suites = tuple(s for s in SUITE_TABLES if s != SUITE)
    for name, value in check_table("baseline.metrics", table.get("metrics", {}), where).items():
        suite, dot, metric = name.partition(".")
        if not dot or not metric:
            raise InvalidArgument(
                f'{name!r} in [baseline.metrics] of {ctx.path}: expected "suite.metric" = '
                'tolerance, e.g. "accuracy.top1" = 0.005'
            )
        if suite not in suites:
            from vcheck.errors import UnknownNameError

            raise UnknownNameError("suite", suite, suites, f"(in [baseline.metrics] of {ctx.path})")
        metrics[name] = _tolerance(name, value, f"[baseline.metrics] of {ctx.path}")
    return BaselineProfile(tolerance, alpha, metrics)


def _tolerance(name: str, value: Any, where: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise InvalidArgument(
            f"{name}={value!r} in {where}: expected a tolerance >= 0 (the allowed worsening "
            "in the metric's own units)"
        )
    return float(value)


# -- the baseline document ----------------------------------------------------------------------


def load_baseline(path: Path) -> dict[str, Any]:
    """Read and sanity-check a baseline metrics.json (usage error with the fix otherwise)."""
    from vcheck.report.document import READABLE_VERSIONS, SCHEMA_ID

    at = f"--baseline={path}"
    if Path(path).is_dir():
        raise InvalidArgument(f"{at}: is a directory; pass the metrics JSON of an earlier run")
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(
            f"{at}: no such file; pass the metrics JSON an earlier run wrote "
            "(reports/<model>.metrics.json)"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{at}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise InvalidArgument(f'{at}: not a vcheck metrics JSON (no "schema": "{SCHEMA_ID}")')
    if doc.get("schema_version") not in READABLE_VERSIONS:
        raise InvalidArgument(
            f"{at}: schema_version={doc.get('schema_version')!r}; this vcheck reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    checks, eval_sets = doc.get("checks"), doc.get("eval_sets")
    if not isinstance(checks, list) or not isinstance(eval_sets, list):
        raise InvalidArgument(f"{at}: malformed document (no checks or eval_sets list)")
    return doc


def check_eval_sets(doc: dict[str, Any], path: Path, fingerprints: Mapping[str, str]) -> None:
    """Refuse a baseline measured on other data than this run (by eval-set fingerprint)."""
    theirs = {e.get("name"): e.get("fingerprint") for e in doc["eval_sets"]}
    common = sorted(set(theirs) & set(fingerprints))
    if not common:
        raise InvalidArgument(
            f"--baseline={path}: it has eval sets {sorted(map(str, theirs))}, this run "
            f"{sorted(fingerprints)}; compare runs of the same domain and data"
        )
    for name in common:
        if theirs[name] != fingerprints[name]:
            raise InvalidArgument(
                f"--baseline={path}: eval set {name} has fingerprint {str(theirs[name])[:12]} "
                f"there and {fingerprints[name][:12]} here (other data, --max-samples or "
                "--seed); rerun the baseline on the same data or drop --baseline"
            )


def describe(doc: dict[str, Any], path: Path, compared: int) -> dict[str, Any]:
    model = doc.get("model") or {}
    return {
        "path": str(path),
        "model": str(model.get("name")),
        "fingerprint": str(model.get("fingerprint")),
        "compared": compared,
    }


# -- comparisons --------------------------------------------------------------------------------


def _key(c: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return c["suite"], c["metric"], c["eval_set"], c["slice"] or ""


def _mover(current: dict[str, Any], base: dict[str, Any]) -> tuple[float, float] | None:
    """Interval of current - base from the two intervals (MOVER, independent estimates)."""
    if not current["ci"] or not base["ci"]:
        return None
    c, (lc, uc) = current["value"], current["ci"]
    b, (lb, ub) = base["value"], base["ci"]
    d = c - b
    return (d - math.hypot(c - lc, ub - b), d + math.hypot(uc - c, b - lb))


def mcnemar_p(base_correct, current_correct) -> tuple[float, int, int]:
    """One-sided exact McNemar p-value that the current run is worse, and the discordant
    counts (regressions: right before, wrong now; improvements: the reverse)."""
    import numpy as np
    from scipy.stats import binomtest

    base_correct = np.asarray(base_correct, bool)
    current_correct = np.asarray(current_correct, bool)
    worse = int((base_correct & ~current_correct).sum())
    better = int((~base_correct & current_correct).sum())
    if worse + better == 0:
        return 1.0, worse, better
    return float(binomtest(worse, worse + better, 0.5, alternative="greater").pvalue), worse, better


def compare(
    doc: dict[str, Any],
    current: list[dict[str, Any]],
    per_sample: Mapping[str, Mapping[str, Any]],
    profile: BaselineProfile,
    gate: str,
) -> list[CheckResult]:
    """The non-regression checks of ``current`` (checks as JSON) against ``doc``."""
    from vcheck.report.document import unpack_bits

    theirs: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for c in doc["checks"]:
        if c.get("suite") != SUITE:
            theirs.setdefault(_key(c), c)
    out = []
    seen = set()
    for c in current:
        key = _key(c)
        base = theirs.get(key)
        if c["suite"] == SUITE or base is None or key in seen:
            continue
        seen.add(key)
        if c["value"] is None or base.get("value") is None:
            continue
        direction = c["direction"] or base.get("direction")
        tolerance = profile.tolerance_for(c["suite"], c["metric"])
        threshold = None
        if direction == "min":
            threshold = Threshold(-tolerance, "min")
        elif direction == "max":
            threshold = Threshold(tolerance, "max")
        out.append(
            CheckResult(
                suite=SUITE,
                metric=f"{c['suite']}.{c['metric']}",
                eval_set=c["eval_set"],
                value=float(c["value"]) - float(base["value"]),
                n=c["n"],
                threshold=threshold,
                ci=_mover(c, base),
                ci_method="mover" if c["ci"] and base.get("ci") else None,
                gate=gate,
                slice=c["slice"],
                nodeid=c["nodeid"],
                details={
                    "baseline": base["value"],
                    "current": c["value"],
                    "tolerance": tolerance,
                    "change": "current - baseline",
                },
                exact=bool(c.get("exact") and base.get("exact")),
            )
        )
    for name, mine in sorted(per_sample.items()):
        base = (doc.get("per_sample") or {}).get(name)
        if not base or base.get("ids_sha256") != mine["ids_sha256"] or base["n"] != mine["n"]:
            continue
        p, worse, better = mcnemar_p(
            unpack_bits(base["top1_correct"], base["n"]),
            unpack_bits(mine["top1_correct"], mine["n"]),
        )
        out.append(
            CheckResult(
                suite=SUITE,
                metric="accuracy.top1.mcnemar_p",
                eval_set=name,
                value=p,
                n=mine["n"],
                threshold=Threshold(profile.mcnemar_alpha, "min"),
                ci_method="exact McNemar, one-sided",
                gate=gate,
                exact=True,  # a test's p-value against alpha: the gate is the test itself
                nodeid="",
                details={
                    "regressions": worse,
                    "improvements": better,
                    "note": f"{worse} samples right in the baseline are wrong now, {better} "
                    "the other way (exact McNemar: is the current model worse?)",
                },
            )
        )
    return out
