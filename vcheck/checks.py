"""CheckResult and the gate: the single input of the report and the JSON.

A check compares a metric with a threshold in a direction ("min": value must be at least the
threshold; "max": at most). ``--gate`` says how the confidence interval is used:

- ``point``: the estimate itself against the threshold (default);
- ``lower``: the conservative end of the interval must clear the threshold;
- ``upper``: fail only when even the optimistic end misses it (confidently bad).

A metric with no threshold in the profile is recorded with outcome ``info``.

An interval gate never falls back to the estimate: a check without a usable interval (none,
not estimable, or degenerate) fails under ``lower``/``upper`` with a line saying why
(:attr:`CheckResult.refusal`). Only checks of exact properties (``exact=True``: counts of
non-finite outputs, differences between two passes) are compared as they are under any gate.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Direction = Literal["min", "max"]
Outcome = Literal["pass", "fail", "info"]


@dataclass(frozen=True)
class Threshold:
    value: float
    direction: Direction

    def __str__(self) -> str:
        return f"{'>=' if self.direction == 'min' else '<='} {self.value:g}"


def interval_problem(ci: tuple[float, float] | None) -> str | None:
    """Why ``ci`` cannot gate a check, or None when it can."""
    if ci is None:
        return "no interval"
    if not all(math.isfinite(v) for v in ci):
        return "its interval could not be estimated"
    if ci[0] == ci[1]:
        return f"degenerate interval [{ci[0]:.4g}, {ci[1]:.4g}]"
    return None


def gate_value(
    value: float, ci: tuple[float, float] | None, direction: Direction, gate: str
) -> float:
    """The number compared with the threshold under ``gate``; NaN when an interval gate has
    no usable interval (never the estimate in its place)."""
    if gate == "point":
        return value
    if interval_problem(ci) is not None or not math.isfinite(value):
        return math.nan
    low, high = ci
    conservative = gate == "lower"
    if direction == "min":
        return low if conservative else high
    return high if conservative else low


def decide(
    value: float,
    ci: tuple[float, float] | None,
    threshold: Threshold | None,
    gate: str,
    exact: bool = False,
) -> Outcome:
    if threshold is None:
        return "info"
    x = gate_value(value, ci, threshold.direction, "point" if exact else gate)
    if not math.isfinite(x):
        return "fail"
    ok = x >= threshold.value if threshold.direction == "min" else x <= threshold.value
    return "pass" if ok else "fail"


@dataclass
class CheckResult:
    """One gated (or informational) measurement, as the report and metrics.json show it."""

    suite: str
    metric: str
    eval_set: str
    value: float
    n: int
    threshold: Threshold | None = None
    ci: tuple[float, float] | None = None
    ci_method: str | None = None
    gate: str = "point"
    slice: str | None = None
    nodeid: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    exact: bool = False
    outcome: Outcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = decide(self.value, self.ci, self.threshold, self.gate, self.exact)

    @property
    def refusal(self) -> str | None:
        """Why this check cannot be gated with ``--gate lower|upper``; None when it can.

        >>> CheckResult("accuracy", "nll", "test", 0.3, 20, Threshold(0.5, "max"),
        ...             gate="lower").refusal
        'nll: no interval; use --gate point or drop the threshold'
        """
        if self.gate == "point" or self.threshold is None or self.exact:
            return None
        problem = interval_problem(self.ci)
        if problem is None:
            return None
        why = self.details.get("ci_note")
        return f"{self.metric}: {why or problem}; use --gate point or drop the threshold"

    @property
    def subject(self) -> str:
        where = self.eval_set + (f"/{self.slice}" if self.slice else "")
        return f"{self.metric} on {where}"

    @property
    def margin(self) -> float | None:
        """How far the gated value clears the threshold (negative: by how much it misses)."""
        if self.threshold is None:
            return None
        gate = "point" if self.exact else self.gate
        x = gate_value(self.value, self.ci, self.threshold.direction, gate)
        sign = 1 if self.threshold.direction == "min" else -1
        return sign * (x - self.threshold.value)

    def message(self) -> str:
        """One line a release manager can read: what, value, interval, threshold, verdict."""
        finite = self.ci is not None and all(math.isfinite(v) for v in self.ci)
        ci = f" [{self.ci[0]:.4f}, {self.ci[1]:.4f}]" if finite else ""
        text = f"{self.subject} = {self.value:.4f}{ci} (n={self.n})"
        if self.threshold is None:
            return text + ", no threshold in the profile (informational)"
        note = f": {self.details['note']}" if self.details.get("note") else ""
        if self.refusal:
            return (
                f"{text} cannot be gated against {self.threshold} with --gate {self.gate} "
                f"({self.refusal}){note}"
            )
        verb = {"pass": "meets", "fail": "fails"}[self.outcome]
        gate = "exact property" if self.exact and self.gate != "point" else f"gate={self.gate}"
        return f"{text} {verb} the threshold {self.threshold} ({gate}){note}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["threshold"] = self.threshold.value if self.threshold else None
        d["direction"] = self.threshold.direction if self.threshold else None
        d["ci"] = list(self.ci) if self.ci else None
        d["margin"] = self.margin
        for key in ("value", "margin"):
            if d[key] is not None and not math.isfinite(d[key]):
                d[key] = None
        if d["ci"] is not None and not all(math.isfinite(v) for v in d["ci"]):
            d["ci"] = None
        d["details"] = _finite_or_none(d["details"])
        if self.refusal:
            d["details"]["gate_refusal"] = self.refusal
        return d


def _finite_or_none(obj: Any) -> Any:
    """JSON has no NaN: replace non-finite floats (at any depth) with None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Measurement:
    """A metric value with its sample count, interval and extra data for the report."""

    value: float
    n: int
    ci: tuple[float, float] | None = None
    ci_method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # An exact property (a count of non-finite rows, a difference between two passes): no
    # sampling error, so it is compared as it is under every gate.
    exact: bool = False

    def __post_init__(self) -> None:
        # A positional dict or a 4-field interval object in the ``ci`` slot would only
        # surface when the report is written, after every test: refuse it where it is built.
        if self.ci is not None and (
            len(self.ci) != 2 or not all(isinstance(v, numbers.Real) for v in self.ci)
        ):
            raise TypeError(f"Measurement.ci must be (low, high) or None, not {self.ci!r}")
