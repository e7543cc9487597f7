"""Fairness metrics against fairlearn's own functions, on random and hand-built cases.

vcheck computes SPD / DEO / EOD / AAOD / AED and the accuracy gap from group counts (fast
enough to bootstrap); fairlearn is the reference. Where every rate is defined, the numbers
must equal fairlearn's functions called on the whole data; where a group has no positives (or
too few) of a class, they must equal fairlearn's functions called on the rows of the groups
that count, which is the documented difference from fairlearn's zero-division convention.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate_difference,
    zero_one_loss_difference,
)
from sklearn.metrics import accuracy_score

from vcheck.evaluate.fairness import PairSpec, evaluate_attribute
from vcheck.functional.fairness import (
    FAIRNESS_METRICS,
    between_groups,
    fairness_metrics,
    group_counts,
)
from vcheck.functional.group_bootstrap import stratified_bootstrap_interval


def vcheck_metrics(y, p, g, classes, min_samples=1):
    codes = np.unique(g, return_inverse=True)[1]
    return fairness_metrics(group_counts(y, p, codes, codes.max() + 1, classes), min_samples)


def reference(y, p, g, classes, min_samples=1):
    """Each metric from fairlearn's functions, one-vs-rest, on the rows that count."""
    per_class = {m: [] for m in FAIRNESS_METRICS}
    for c in classes:
        yt, yp = y == c, p == c
        spd = demographic_parity_difference(yt, yp, sensitive_features=g)
        aed = zero_one_loss_difference(yt, yp, sensitive_features=g)

        tpr = restricted(equal_opportunity_difference, yt, yp, g, yt, min_samples)
        fpr = restricted(false_positive_rate_difference, yt, yp, g, ~yt, min_samples)
        pair = [v for v in (tpr, fpr) if not math.isnan(v)]
        per_class["spd"].append(spd)
        per_class["aed"].append(aed)
        per_class["eod"].append(tpr)
        per_class["deo"].append(max(pair) if pair else math.nan)
        per_class["aaod"].append(sum(pair) / len(pair) if pair else math.nan)
    return {m: float(np.nanmean(v)) for m, v in per_class.items()}


def restricted(fn, yt, yp, g, wanted, min_samples):
    """fairlearn's ``fn`` on the rows of the groups with ``min_samples`` of ``wanted``."""
    counts = {s: wanted[g == s].sum() for s in np.unique(g)}
    groups = [s for s, k in counts.items() if k >= min_samples]
    if len(groups) < 2:
        return math.nan
    rows = np.isin(g, groups)
    return fn(yt[rows], yp[rows], sensitive_features=g[rows])


def assert_matches(ours, ref):
    for m in FAIRNESS_METRICS:
        assert ours[m] == pytest.approx(ref[m], abs=1e-12), m


def random_case(seed, n=600, num_classes=3, n_groups=3, skill=0.7):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    g = rng.choice([f"g{i}" for i in range(n_groups)], n)
    bias = np.where(g == "g0", 0.2, 0.0)  # the first group is predicted worse
    right = rng.random(n) < skill - bias
    p = np.where(right, y, rng.integers(0, num_classes, n))
    return y, p, g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_multiclass_equals_fairlearn_one_vs_rest(seed):
    y, p, g = random_case(seed)
    classes = np.arange(3)
    ours = vcheck_metrics(y, p, g, classes)
    assert ours["left_out_tpr"] == ours["left_out_fpr"] == 0  # every rate defined
    assert_matches(ours, reference(y, p, g, classes))
    # ...and, with every rate defined, fairlearn's equalized-odds aggregates directly:
    deo = np.mean(
        [equalized_odds_difference(y == c, p == c, sensitive_features=g) for c in classes]
    )
    aaod = np.mean(
        [
            equalized_odds_difference(y == c, p == c, sensitive_features=g, agg="mean")
            for c in classes
        ]
    )
    assert ours["deo"] == pytest.approx(deo, abs=1e-12)
    assert ours["aaod"] == pytest.approx(aaod, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_random_binary_equals_fairlearn(seed):
    y, p, g = random_case(seed, num_classes=2, n_groups=4)
    ours = vcheck_metrics(y, p, g, np.array([1]))
    assert ours["spd"] == pytest.approx(demographic_parity_difference(y, p, sensitive_features=g))
    assert ours["eod"] == pytest.approx(equal_opportunity_difference(y, p, sensitive_features=g))
    assert ours["deo"] == pytest.approx(equalized_odds_difference(y, p, sensitive_features=g))
    assert ours["aaod"] == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=g, agg="mean")
    )
    assert ours["aed"] == pytest.approx(zero_one_loss_difference(y, p, sensitive_features=g))


def test_hand_built_binary_case():
    # Group a: 4 samples, labels 1 1 0 0, predicted 1 0 1 0 -> TPR 1/2, FPR 1/2, sel 1/2,
    #          error 2/4. Group b: labels 1 1 0 0, predicted 1 1 0 0 -> TPR 1, FPR 0, sel 1/2,
    #          error 0.
    y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    p = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    g = np.array(["a"] * 4 + ["b"] * 4)
    ours = vcheck_metrics(y, p, g, np.array([1]))
    expected = {"spd": 0.0, "eod": 0.5, "deo": 0.5, "aaod": 0.5, "aed": 0.5}
    assert {m: ours[m] for m in expected} == pytest.approx(expected)
    assert_matches(ours, reference(y, p, g, [1]))
    counts = group_counts(y, p, np.repeat([0, 1], 4), 2, np.array([1]))
    assert counts.accuracy.tolist() == [0.5, 1.0]


def test_hand_built_multiclass_one_vs_rest():
    # Three classes, two groups; class 2 only occurs in group b (a has no positives of it).
    y = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 0, 0, 2, 1])
    g = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    classes = np.array([0, 1, 2])
    ours = vcheck_metrics(y, p, g, classes)
    # class 0: TPR a 1/2, b 1/1 -> 1/2; FPR a 0/2, b 1/3 -> 1/3. class 1: TPR a 2/2, b 0/1 -> 1;
    # FPR a 1/2, b 1/3 -> 1/6. class 2: TPR only b (left out); FPR a 0/4, b 0/2 -> 0.
    assert ours["eod"] == pytest.approx((1 / 2 + 1) / 2)
    assert ours["deo"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert ours["aaod"] == pytest.approx(((1 / 2 + 1 / 3) / 2 + (1 + 1 / 6) / 2 + 0) / 3)
    assert ours["left_out_tpr"] == 1
    assert_matches(ours, reference(y, p, g, classes))


def test_single_class_group_is_left_out_where_fairlearn_scores_it_zero():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    p = np.where(rng.random(300) < 0.8, y, 1 - y)
    g = np.array(["a"] * 150 + ["b"] * 100 + ["c"] * 50)
    y[250:] = 0  # group c holds only negatives: it has no true positive rate
    ours = vcheck_metrics(y, p, g, np.array([1]))
    ref = reference(y, p, g, [1])
    assert_matches(ours, ref)
    assert ours["left_out_tpr"] == 1
    rows = g != "c"
    assert ours["eod"] == pytest.approx(
        equal_opportunity_difference(y[rows], p[rows], sensitive_features=g[rows])
    )
    # fairlearn on every row scores c's TPR as 0 and reports a gap of at least a's TPR:
    whole = equal_opportunity_difference(y, p, sensitive_features=g)
    assert whole > 0.7 > ours["eod"]


def test_min_samples_leaves_small_cells_out():
    y, p, g = random_case(11, n=400, num_classes=4)
    classes = np.arange(4)
    y[g == "g2"] = np.where(y[g == "g2"] == 3, 0, y[g == "g2"])  # g2: no class 3 ...
    y[np.flatnonzero(g == "g2")[:5]] = 3  # ... but 5 of them
    ours = vcheck_metrics(y, p, g, classes, min_samples=10)
    assert ours["left_out_tpr"] == 1
    assert_matches(ours, reference(y, p, g, classes, min_samples=10))
    loose = vcheck_metrics(y, p, g, classes, min_samples=1)
    assert loose["left_out_tpr"] == 0
    assert_matches(loose, reference(y, p, g, classes))


def test_between_groups_needs_two_defined_groups():
    values = np.array([[0.1, 0.9], [0.4, 0.2], [0.3, 0.5]])
    defined = np.array([[1, 1], [1, 0], [1, 0]], dtype=bool)
    result = between_groups(values, defined)
    assert result[0] == pytest.approx(0.3)
    assert math.isnan(result[1])


# -- the evaluator: groups, exclusions, accuracy gap vs MetricFrame ------------------------------


def evaluate(y, p, groups, min_group_size, **kw):
    order = sorted(set(groups))
    return evaluate_attribute(
        "attr",
        "test",
        list(groups),
        order,
        y,
        p,
        num_classes=kw.pop("num_classes", 3),
        min_group_size=min_group_size,
        resamples=kw.pop("resamples", 50),
        **kw,
    )


def test_accuracy_gap_ratio_worst_equal_metricframe():
    y, p, g = random_case(5, n=900, num_classes=3, n_groups=3)
    result = evaluate(y, p, g, min_group_size=10)
    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=p, sensitive_features=g)
    for group in result.groups:
        assert group.accuracy == pytest.approx(frame.by_group[group.name])
    m = result.measurements
    assert m["accuracy_gap"].value == pytest.approx(frame.difference())
    assert m["accuracy_ratio"].value == pytest.approx(frame.ratio())
    assert m["worst_group_accuracy"].value == pytest.approx(frame.group_min())
    assert m["worst_group_accuracy"].details["worst_group"] == "g0"  # the biased group
    assert_matches({k: m[k].value for k in FAIRNESS_METRICS}, reference(y, p, g, np.arange(3)))
    for name in ("accuracy_gap", "accuracy_ratio", *FAIRNESS_METRICS):
        low, high = m[name].ci
        assert low <= high and m[name].ci_method.startswith("stratified-bootstrap")


def test_group_below_minimum_is_excluded_and_listed():
    y, p, g = random_case(6, n=600, num_classes=3, n_groups=2)
    g = g.astype(object)
    g[:8] = "tiny"  # 8 samples < min_group_size = 20
    result = evaluate(y, p, g, min_group_size=20)
    assert [x.name for x in result.excluded] == ["tiny"]
    assert result.group("tiny").n == 8 and not result.group("tiny").included
    assert "tiny (n=8)" in result.excluded_note()
    rows = g != "tiny"
    frame = MetricFrame(
        metrics=accuracy_score, y_true=y[rows], y_pred=p[rows], sensitive_features=g[rows]
    )
    assert result.measurements["accuracy_gap"].value == pytest.approx(frame.difference())
    assert result.measurements["accuracy_gap"].n == rows.sum()
    ref = reference(y[rows], p[rows], g[rows].astype(str), np.arange(3))
    assert_matches({k: result.measurements[k].value for k in FAIRNESS_METRICS}, ref)


def test_group_with_one_sample():
    y, p, g = random_case(8, n=300, num_classes=3, n_groups=2)
    g = g.astype(object)
    g[0] = "single"
    excluded = evaluate(y, p, g, min_group_size=2)
    assert excluded.group("single").n == 1 and not excluded.group("single").included
    included = evaluate(y, p, g, min_group_size=1)
    single = included.group("single")
    assert single.included and single.accuracy in (0.0, 1.0)
    low, high = single.ci
    assert 0 <= low < high <= 1  # Wilson stays a real interval at n = 1
    # Its TPR is defined for its own class only, its FPR for the two others.
    ref = reference(y, p, g.astype(str), np.arange(3))
    assert_matches({k: included.measurements[k].value for k in FAIRNESS_METRICS}, ref)
    frame = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=p, sensitive_features=g)
    assert included.measurements["accuracy_gap"].value == pytest.approx(frame.difference())


def test_fewer_than_two_groups_gives_no_gap():
    y, p, g = random_case(9, n=200, num_classes=3, n_groups=2)
    result = evaluate(y, p, np.where(g == "g0", "big", "small"), min_group_size=150)
    assert len(result.included) <= 1
    assert math.isnan(result.measurements["accuracy_gap"].value)
    assert result.measurements["accuracy_gap"].ci is not None
    assert all(math.isnan(v) for v in result.measurements["accuracy_gap"].ci)


def test_class_absent_from_labels_is_not_averaged():
    y, p, g = random_case(10, n=600, num_classes=3)
    p = p.copy()
    p[:20] = 3  # the model predicts a fourth class no sample has
    result = evaluate(y, p, g, min_group_size=10, num_classes=4)
    assert result.measurements["spd"].details["classes"] == 3
    assert_matches(
        {k: result.measurements[k].value for k in FAIRNESS_METRICS},
        reference(y, p, g, np.arange(3)),
    )


def test_pair_gap_is_first_minus_second():
    y, p, g = random_case(12, n=900, num_classes=3, n_groups=3)
    pairs = [PairSpec("g1_minus_g0", "attr", ("g1", "g0")), PairSpec("x", "attr", ("g1", "zz"))]
    result = evaluate(y, p, g, min_group_size=10, pairs=pairs)
    acc = {x.name: x.accuracy for x in result.groups}
    gap = result.pair_values["g1_minus_g0"]
    assert gap.value == pytest.approx(acc["g1"] - acc["g0"]) and gap.value > 0
    assert gap.ci[0] <= gap.value <= gap.ci[1]
    assert math.isnan(result.pair_values["x"].value)  # unknown group: nothing to measure


def test_empty_group_in_order_is_listed_with_n_zero():
    y, p, g = random_case(13, n=300, num_classes=3, n_groups=2)
    result = evaluate_attribute(
        "attr", "test", list(g), ["g0", "g1", "never"], y, p, num_classes=3, min_group_size=5
    )
    assert result.group("never").n == 0 and not result.group("never").included
    assert "never (n=0)" in result.excluded_note()


# -- the stratified bootstrap ----------------------------------------------------------------


def test_stratified_bootstrap_keeps_group_sizes_and_is_seeded():
    strata = np.repeat([0, 1, 2], [5, 50, 500])
    seen = []

    def statistic(idx):
        seen.append(np.bincount(strata[idx], minlength=3).tolist())
        return np.array([len(idx), strata[idx].mean()])

    low, high, _ = stratified_bootstrap_interval(statistic, strata, resamples=30, seed=1)
    assert all(s == [5, 50, 500] for s in seen)
    assert low.tolist() == high.tolist() == [555, strata.mean()]
    x = np.random.default_rng(0).random(555)
    a = stratified_bootstrap_interval(lambda i: x[i].mean(), strata, resamples=100, seed=3)
    b = stratified_bootstrap_interval(lambda i: x[i].mean(), strata, resamples=100, seed=3)
    assert a == b and a[0] < x.mean() < a[1]


def test_stratified_bootstrap_counts_undefined_resamples_instead_of_dropping_them():
    strata = np.repeat([0, 1], 20)
    calls = iter(range(10**6))

    def statistic(idx):
        return np.array([math.nan if next(calls) % 3 == 0 else 1.0, 2.0])

    low, high, undefined = stratified_bootstrap_interval(statistic, strata, resamples=60, seed=0)
    assert math.isnan(low[0]) and math.isnan(high[0]) and undefined[0] == 20
    assert (low[1], high[1], undefined[1]) == (2.0, 2.0, 0)
