"""CheckResult and the gate: the single input of the report and the JSON.

A check compares a metric with a threshold in a direction ("min": value must be at least the
threshold; "max": at most). ``--gate`` says how the confidence interval is used:

- ``point``: the estimate itself against the threshold (default);
- ``lower``: the conservative end of the interval must clear the threshold;
- ``upper``: fail only when even the optimistic end misses it (confidently bad).

A metric with no threshold in the profile is recorded with outcome ``info``.
"""

from __future__ import annotations

import math
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


def gate_value(
    value: float, ci: tuple[float, float] | None, direction: Direction, gate: str
) -> float:
    """The number compared with the threshold under ``gate``; a non-finite value stays so."""
    if (
        gate == "point"
        or ci is None
        or not math.isfinite(value)
        or not all(math.isfinite(v) for v in ci)
    ):
        return value
    low, high = ci
    conservative = gate == "lower"
    if direction == "min":
        return low if conservative else high
    return high if conservative else low


def decide(
    value: float, ci: tuple[float, float] | None, threshold: Threshold | None, gate: str
) -> Outcome:
    if threshold is None:
        return "info"
    x = gate_value(value, ci, threshold.direction, gate)
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
    outcome: Outcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = decide(self.value, self.ci, self.threshold, self.gate)

    @property
    def subject(self) -> str:
        where = self.eval_set + (f"/{self.slice}" if self.slice else "")
        return f"{self.metric} on {where}"

    @property
    def margin(self) -> float | None:
        """How far the gated value clears the threshold (negative: by how much it misses)."""
        if self.threshold is None:
            return None
        x = gate_value(self.value, self.ci, self.threshold.direction, self.gate)
        sign = 1 if self.threshold.direction == "min" else -1
        return sign * (x - self.threshold.value)

    def message(self) -> str:
        """One line a release manager can read: what, value, interval, threshold, verdict."""
        finite = self.ci is not None and all(math.isfinite(v) for v in self.ci)
        ci = f" [{self.ci[0]:.4f}, {self.ci[1]:.4f}]" if finite else ""
        text = f"{self.subject} = {self.value:.4f}{ci} (n={self.n})"
        if self.threshold is None:
            return text + ", no threshold in the profile (informational)"
        verb = {"pass": "meets", "fail": "fails"}[self.outcome]
        note = f": {self.details['note']}" if self.details.get("note") else ""
        return f"{text} {verb} the threshold {self.threshold} (gate={self.gate}){note}"

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
