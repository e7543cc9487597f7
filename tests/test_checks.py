"""vcheck.checks: gate semantics, outcomes, margins, messages and JSON form of a check."""

import json
import math

import pytest

from vcheck.checks import CheckResult, Threshold, decide, gate_value


def check(value=0.9, ci=(0.85, 0.95), threshold=None, gate="point", **kw):
    return CheckResult(
        suite="accuracy",
        metric=kw.pop("metric", "top1"),
        eval_set=kw.pop("eval_set", "fmnist_test"),
        value=value,
        n=kw.pop("n", 1000),
        threshold=threshold,
        ci=ci,
        gate=gate,
        **kw,
    )


MIN = Threshold(0.9, "min")  # e.g. top1 >= 0.9
MAX = Threshold(0.05, "max")  # e.g. ece <= 0.05


@pytest.mark.parametrize(
    ("direction", "gate", "expected"),
    [
        # "min": lower asks the low end to clear it, upper only the high end.
        ("min", "point", 0.5),
        ("min", "lower", 0.4),
        ("min", "upper", 0.6),
        # "max": the conservative end is the high one, the optimistic end the low one.
        ("max", "point", 0.5),
        ("max", "lower", 0.6),
        ("max", "upper", 0.4),
    ],
)
def test_gate_value_uses_the_interval_end_the_gate_names(direction, gate, expected):
    assert gate_value(0.5, (0.4, 0.6), direction, gate) == expected


@pytest.mark.parametrize("gate", ["lower", "upper"])
@pytest.mark.parametrize("ci", [None, (math.nan, math.nan), (0.4, math.nan), (0.5, 0.5)])
def test_gate_value_never_falls_back_to_the_estimate(gate, ci):
    assert math.isnan(gate_value(0.5, ci, "min", gate))


@pytest.mark.parametrize("gate", ["lower", "upper"])
@pytest.mark.parametrize(
    ("ci", "details", "why"),
    [
        (None, {}, "nll: no interval; use --gate point or drop the threshold"),
        ((math.nan, math.nan), {}, "nll: its interval could not be estimated; use --gate point"),
        ((0.3, 0.3), {}, "nll: degenerate interval [0.3, 0.3]; use --gate point"),
        (None, {"ci_note": "undefined in 3 of 1000 resamples"}, "nll: undefined in 3 of 1000"),
    ],
)
def test_an_interval_gate_without_a_usable_interval_refuses(gate, ci, details, why):
    # The estimate 0.3 clears the threshold 0.5 (max): a point fallback would pass it.
    result = check(0.3, ci, Threshold(0.5, "max"), gate, metric="nll", details=details)
    assert result.outcome == "fail"
    assert result.refusal.startswith(why)
    assert f"cannot be gated against <= 0.5 with --gate {gate} (nll: " in result.message()
    assert result.to_json()["details"]["gate_refusal"] == result.refusal
    assert result.to_json()["margin"] is None
    assert check(0.3, ci, Threshold(0.5, "max"), "point", metric="nll").outcome == "pass"


@pytest.mark.parametrize("gate", ["lower", "upper"])
def test_an_exact_property_is_compared_as_it_is_under_every_gate(gate):
    ok = check(0.0, None, Threshold(0.0, "max"), gate, metric="non_finite_fraction", exact=True)
    assert ok.outcome == "pass" and ok.refusal is None
    assert "(exact property)" in ok.message()
    bad = check(0.01, None, Threshold(0.0, "max"), gate, exact=True)
    assert bad.outcome == "fail" and bad.refusal is None
    assert bad.to_json()["exact"] is True


def test_refusal_only_concerns_thresholded_checks_under_an_interval_gate():
    assert check(0.3, None, None, "lower").refusal is None  # informational
    assert check(0.3, None, MAX, "point").refusal is None


# value 0.90 with interval [0.88, 0.92]; threshold 0.89 (min) / 0.91 (max)
@pytest.mark.parametrize(
    ("direction", "threshold", "gate", "outcome"),
    [
        ("min", 0.89, "point", "pass"),  # 0.90 >= 0.89
        ("min", 0.89, "lower", "fail"),  # 0.88 <  0.89: not confidently good
        ("min", 0.89, "upper", "pass"),
        ("min", 0.91, "point", "fail"),  # 0.90 <  0.91
        ("min", 0.91, "lower", "fail"),
        ("min", 0.91, "upper", "pass"),  # 0.92 >= 0.91: not confidently bad
        ("min", 0.93, "upper", "fail"),  # even 0.92 misses it
        ("max", 0.91, "point", "pass"),  # 0.90 <= 0.91
        ("max", 0.91, "lower", "fail"),  # 0.92 >  0.91
        ("max", 0.91, "upper", "pass"),
        ("max", 0.89, "point", "fail"),
        ("max", 0.89, "lower", "fail"),
        ("max", 0.89, "upper", "pass"),  # 0.88 <= 0.89
        ("max", 0.87, "upper", "fail"),
    ],
)
def test_outcome_under_each_gate(direction, threshold, gate, outcome):
    result = check(0.90, (0.88, 0.92), Threshold(threshold, direction), gate)
    assert result.outcome == outcome


@pytest.mark.parametrize(
    ("gate", "ci_min", "ci_max"),
    [
        ("point", (0.85, 0.95), (0.01, 0.1)),
        ("lower", (0.9, 0.95), (0.01, 0.05)),  # the conservative end sits on the threshold
        ("upper", (0.85, 0.9), (0.05, 0.1)),  # the optimistic end sits on the threshold
    ],
)
def test_threshold_is_inclusive(gate, ci_min, ci_max):
    assert check(0.9, ci_min, MIN, gate).outcome == "pass"
    assert check(0.05, ci_max, MAX, gate).outcome == "pass"


def test_no_threshold_is_informational():
    result = check(0.1, threshold=None)
    assert result.outcome == "info"
    assert result.margin is None
    assert decide(math.nan, None, None, "point") == "info"


@pytest.mark.parametrize("gate", ["point", "lower", "upper"])
@pytest.mark.parametrize("ci", [None, (math.nan, math.nan), (0.95, 0.99), (0.0, 0.01)])
@pytest.mark.parametrize("threshold", [MIN, MAX])
def test_nan_value_fails_whatever_the_gate_and_interval(gate, ci, threshold):
    assert check(math.nan, ci, threshold, gate).outcome == "fail"


def test_infinite_value_against_max_threshold_fails():
    assert check(math.inf, None, MAX).outcome == "fail"


@pytest.mark.parametrize(
    ("value", "threshold", "margin"),
    [
        (0.93, MIN, 0.03),  # clears >= 0.9 by 0.03
        (0.86, MIN, -0.04),  # misses by 0.04
        (0.02, MAX, 0.03),  # clears <= 0.05 by 0.03
        (0.08, MAX, -0.03),
    ],
)
def test_margin_is_positive_when_passing_and_negative_when_failing(value, threshold, margin):
    result = check(value, None, threshold)
    assert result.margin == pytest.approx(margin)
    assert (result.margin >= 0) == (result.outcome == "pass")


def test_margin_uses_the_gated_value():
    result = check(0.92, (0.87, 0.96), MIN, "lower")
    assert result.margin == pytest.approx(0.87 - 0.9)
    assert result.outcome == "fail"
    result = check(0.04, (0.02, 0.07), MAX, "lower")
    assert result.margin == pytest.approx(0.05 - 0.07)


def test_message_names_metric_eval_set_value_threshold_and_gate():
    result = check(0.8765, (0.85, 0.9), MIN, "lower", metric="top5", eval_set="fmnist_test")
    text = result.message()
    for part in ("top5", "fmnist_test", "0.8765", "0.9", ">=", "lower", "fails", "n=1000"):
        assert part in text
    assert "\n" not in text
    passing = check(0.02, None, MAX, "point", metric="ece").message()
    assert "ece" in passing and "<= 0.05" in passing and "meets" in passing
    assert "point" in passing


def test_message_names_the_slice_and_informational_checks():
    result = check(0.97, None, None, slice="footwear")
    text = result.message()
    assert "fmnist_test/footwear" in text
    assert "informational" in text


def test_threshold_str():
    assert str(Threshold(0.9, "min")) == ">= 0.9"
    assert str(Threshold(0.05, "max")) == "<= 0.05"


def test_to_json_has_threshold_direction_and_margin():
    d = check(0.93, (0.91, 0.95), MIN, "point", slice="footwear").to_json()
    assert d["threshold"] == 0.9 and d["direction"] == "min"
    assert d["ci"] == [0.91, 0.95]
    assert d["margin"] == pytest.approx(0.03)
    assert d["outcome"] == "pass"
    assert d["slice"] == "footwear"
    info = check(0.5, None, None).to_json()
    assert info["threshold"] is None and info["direction"] is None and info["margin"] is None


@pytest.mark.parametrize(
    ("value", "ci"),
    [
        (math.nan, None),
        (math.nan, (math.nan, math.nan)),
        (0.9, (math.nan, 0.95)),
        (math.inf, (0.1, 0.2)),
        (math.nan, (0.8, 0.95)),
    ],
)
@pytest.mark.parametrize("threshold", [MIN, MAX, None])
def test_to_json_never_emits_nan(value, ci, threshold):
    d = check(value, ci, threshold, "lower").to_json()
    text = json.dumps(d, allow_nan=False)  # raises on NaN or infinity
    assert "NaN" not in text
    if not math.isfinite(value):
        assert d["value"] is None
