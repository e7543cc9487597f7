"""vcheck.functional: metrics and intervals against scikit-learn, scipy and hand references."""

import math

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays
from scipy.special import softmax
from scipy.stats import binomtest, norm
from sklearn.metrics import (
    balanced_accuracy_score,
    log_loss,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from vcheck.functional import classification as F
from vcheck.functional.intervals import (
    bootstrap_interval,
    resample_weights,
    wilson_interval,
    worst_of_wilson,
)

SETTINGS = settings(max_examples=50, deadline=None)


def random_probs(rng, n, c, concentration=1.0):
    return rng.dirichlet(np.full(c, concentration), size=n)


def labelled(rng, n, c):
    """Labels covering every class (for sklearn's multi-class AUC) in random order."""
    labels = np.concatenate([np.arange(c), rng.integers(0, c, size=n - c)])
    return rng.permutation(labels)


@st.composite
def prob_matrices(draw, min_classes=2, max_classes=8, max_rows=40):
    c = draw(st.integers(min_classes, max_classes))
    n = draw(st.integers(1, max_rows))
    raw = draw(arrays(np.float64, (n, c), elements=st.floats(0.0, 1.0, allow_nan=False)))
    raw = raw + 1e-3  # keep rows strictly positive so they normalise
    probs = raw / raw.sum(axis=1, keepdims=True)
    labels = draw(arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return probs, labels


seeds = st.integers(0, 2**32 - 1)


# -- top-k -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5])
def test_topk_correct_matches_sklearn_top_k_accuracy(k):
    rng = np.random.default_rng(k)
    scores = rng.normal(size=(300, 7))  # continuous: no ties, tie-breaking does not matter
    labels = rng.integers(0, 7, size=300)
    ours = F.topk_correct(scores, labels, k)
    assert ours.shape == (300,) and ours.dtype == bool
    expected = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7))
    assert ours.mean() == pytest.approx(expected)


def test_topk_correct_breaks_ties_toward_lower_index():
    scores = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    assert F.topk_correct(scores, np.array([0, 1]), k=1).tolist() == [True, False]


def test_topk_with_k_equal_classes_is_always_correct():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 4))
    assert F.topk_correct(scores, rng.integers(0, 4, size=20), k=4).all()


@pytest.mark.parametrize("k", [0, 4])
def test_topk_rejects_k_outside_range(k):
    with pytest.raises(ValueError, match="k="):
        F.topk_correct(np.zeros((2, 3)), np.array([0, 1]), k)


@SETTINGS
@given(prob_matrices(min_classes=3))
def test_topk_is_monotone_in_k(data):
    probs, labels = data
    previous = np.zeros(len(labels), dtype=bool)
    for k in range(1, probs.shape[1] + 1):
        current = F.topk_correct(probs, labels, k)
        assert (current >= previous).all()  # correct at k stays correct at k + 1
        previous = current
    assert previous.all()


# -- recall and balanced accuracy ------------------------------------------------------


def test_per_class_recall_matches_sklearn():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=200)
    preds = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 5, size=200))
    recall = F.per_class_recall(preds, labels, 5)
    expected = recall_score(labels, preds, average=None, labels=np.arange(5))
    np.testing.assert_allclose(recall, expected)


def test_per_class_recall_is_nan_for_absent_class_and_hand_computed_elsewhere():
    labels = np.array([0, 0, 0, 1, 1])
    preds = np.array([0, 0, 2, 1, 0])
    recall = F.per_class_recall(preds, labels, 3)
    assert recall[0] == pytest.approx(2 / 3)
    assert recall[1] == pytest.approx(1 / 2)
    assert math.isnan(recall[2])


def test_balanced_accuracy_matches_sklearn_and_mean_recall():
    rng = np.random.default_rng(2)
    labels = rng.choice(4, size=300, p=[0.7, 0.2, 0.05, 0.05])  # imbalanced
    preds = np.where(rng.random(300) < 0.6, labels, 0)
    value = F.balanced_accuracy(preds, labels)
    assert value == pytest.approx(balanced_accuracy_score(labels, preds))
    assert value == pytest.approx(np.nanmean(F.per_class_recall(preds, labels, 4)))
    assert value != pytest.approx((preds == labels).mean())  # imbalance makes them differ


# -- AUC -------------------------------------------------------------------------------


def test_auc_ovr_macro_matches_sklearn():
    rng = np.random.default_rng(3)
    labels = labelled(rng, 200, 6)
    logits = rng.normal(size=(200, 6))
    logits[np.arange(200), labels] += 1.0  # informative scores
    probs = softmax(logits, axis=1)
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert F.auc_ovr_macro(probs, labels) == pytest.approx(expected)
    assert F.auc_ovr_macro_fast(probs, labels) == pytest.approx(expected)
    assert 0.5 < expected < 1  # the case is not degenerate


def test_auc_with_many_ties_matches_sklearn():
    rng = np.random.default_rng(4)
    rows = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5], [0.6, 0.2, 0.2]])
    probs = rows[rng.integers(0, len(rows), size=120)]  # only four distinct rows: heavy ties
    labels = labelled(rng, 120, 3)
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert F.auc_ovr_macro(probs, labels) == pytest.approx(expected)
    assert F.auc_ovr_macro_fast(probs, labels) == pytest.approx(expected)


def test_auc_binary_matches_sklearn():
    rng = np.random.default_rng(5)
    labels = labelled(rng, 100, 2)
    p1 = np.clip(0.3 * labels + rng.random(100) * 0.7, 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    expected = roc_auc_score(labels, p1)
    assert F.auc_ovr_macro(probs, labels) == pytest.approx(expected)
    assert F.auc_ovr_macro_fast(probs, labels) == pytest.approx(expected)


def test_auc_with_absent_class_averages_present_classes_and_fast_gives_nan():
    rng = np.random.default_rng(6)
    probs = random_probs(rng, 90, 4)
    labels = rng.permutation(np.repeat([0, 1, 3], 30))  # class 2 never occurs
    expected = np.mean([roc_auc_score(labels == c, probs[:, c]) for c in (0, 1, 3)])
    assert F.auc_ovr_macro(probs, labels) == pytest.approx(expected)
    assert math.isnan(F.auc_ovr_macro_fast(probs, labels))


def test_auc_single_class_is_nan():
    probs = random_probs(np.random.default_rng(7), 10, 3)
    assert math.isnan(F.auc_ovr_macro(probs, np.zeros(10, dtype=int)))


def test_auc_perfect_separation_is_one():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[labels] * 0.8 + 0.2 / 3
    assert F.auc_ovr_macro(probs, labels) == pytest.approx(1.0)


@SETTINGS
@given(seeds, st.integers(3, 8), st.integers(10, 60))
def test_auc_fast_equals_sklearn_on_random_inputs(seed, c, n):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n, c, concentration=0.5)
    labels = labelled(rng, n, c)
    value = F.auc_ovr_macro_fast(probs, labels)
    assert 0.0 <= value <= 1.0
    expected = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert value == pytest.approx(expected)


@SETTINGS
@given(prob_matrices())
def test_auc_is_within_unit_interval_or_nan(data):
    probs, labels = data
    value = F.auc_ovr_macro(probs, labels)
    if len(np.unique(labels)) < 2:
        assert math.isnan(value)
    else:
        assert 0.0 <= value <= 1.0


# -- calibration -----------------------------------------------------------------------


def reference_ece(probs, labels, n_bins=15):
    """Guo et al.'s ECE: equal-width bins (lo, hi] over confidence = max probability."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        members = (confidence > lo) & (confidence <= hi)
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.sum() / len(labels) * gap
    return total


def test_ece_matches_reference_loop():
    rng = np.random.default_rng(8)
    probs = random_probs(rng, 500, 10, concentration=0.3)
    labels = rng.integers(0, 10, size=500)
    value = F.expected_calibration_error(probs, labels)
    assert value == pytest.approx(reference_ece(probs, labels))
    assert value > 0.05  # random labels: badly calibrated


@SETTINGS
@given(seeds, st.integers(2, 10), st.integers(1, 80))
def test_ece_matches_reference_loop_on_random_inputs(seed, c, n):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n, c, concentration=0.4)
    labels = rng.integers(0, c, size=n)
    assert F.expected_calibration_error(probs, labels) == pytest.approx(
        reference_ece(probs, labels), abs=1e-12
    )


def test_ece_hand_computed_two_samples():
    # Both in different bins: |1 - 0.9| / 2 + |0 - 0.6| / 2 = 0.35.
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert F.expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.35)


def test_ece_of_perfectly_calibrated_predictions_is_zero():
    # In each bin the accuracy equals the confidence: 0.8 confident, right 4 times out of 5.
    probs = np.tile([0.8, 0.1, 0.1], (10, 1))
    labels = np.array([0, 0, 0, 0, 1] * 2)
    assert F.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    # Certain and always right: also zero.
    assert F.expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def test_ece_of_confident_wrong_predictions_is_near_one():
    probs = np.tile([0.999, 0.001], (50, 1))
    assert F.expected_calibration_error(probs, np.ones(50, dtype=int)) == pytest.approx(0.999)


def test_ece_of_empty_input_is_nan():
    assert math.isnan(F.expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)))


def test_ece_depends_on_bin_count():
    probs = np.array([[0.55, 0.45], [0.65, 0.35]])
    labels = np.array([0, 1])
    # One bin: |accuracy 0.5 - confidence 0.6| = 0.1; with 15 bins each sample is alone.
    assert F.expected_calibration_error(probs, labels, n_bins=1) == pytest.approx(0.1)
    assert F.expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(
        (0.45 + 0.65) / 2
    )


@SETTINGS
@given(prob_matrices())
def test_ece_is_within_unit_interval(data):
    probs, labels = data
    assert 0.0 <= F.expected_calibration_error(probs, labels) <= 1.0


def test_calibration_bins_agree_with_ece():
    rng = np.random.default_rng(9)
    probs = random_probs(rng, 300, 5, concentration=0.5)
    labels = rng.integers(0, 5, size=300)
    bins = F.calibration_bins(probs, labels)
    assert sum(bins["count"]) == 300 and len(bins["count"]) == 15
    ece = sum(
        n / 300 * abs(a - c)
        for n, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"], strict=True)
        if n
    )
    assert ece == pytest.approx(F.expected_calibration_error(probs, labels), abs=1e-5)
    assert all(a is None for n, a in zip(bins["count"], bins["accuracy"], strict=True) if not n)


# -- NLL -------------------------------------------------------------------------------


def test_nll_matches_sklearn_log_loss():
    rng = np.random.default_rng(10)
    logits = rng.normal(scale=3, size=(200, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=200)
    expected = log_loss(labels, softmax(logits.astype(np.float64), axis=1), labels=np.arange(10))
    assert F.negative_log_likelihood(logits, labels) == pytest.approx(expected, rel=1e-6)


def test_nll_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]])
    assert F.negative_log_likelihood(logits, np.array([0, 1])) == pytest.approx(0.0)
    assert F.negative_log_likelihood(logits, np.array([1, 0])) == pytest.approx(1000.0)


def test_nll_of_uniform_logits_is_log_c():
    assert F.negative_log_likelihood(np.zeros((4, 10)), np.arange(4)) == pytest.approx(math.log(10))


# -- prior correction ------------------------------------------------------------------


def test_prior_correction_with_uniform_priors_is_plain_argmax():
    rng = np.random.default_rng(11)
    probs = random_probs(rng, 100, 6)
    preds = F.prior_corrected_predictions(probs, np.full(6, 1 / 6))
    np.testing.assert_array_equal(preds, probs.argmax(axis=1))


def test_prior_correction_moves_predictions_toward_rare_classes():
    probs = np.array([[0.6, 0.4], [0.95, 0.05], [0.2, 0.8]])
    preds = F.prior_corrected_predictions(probs, np.array([0.9, 0.1]))
    # 0.6/0.9 < 0.4/0.1 -> rare class 1; 0.95/0.9 > 0.05/0.1 -> stays 0.
    assert preds.tolist() == [1, 0, 1]
    rng = np.random.default_rng(12)
    many = random_probs(rng, 500, 3)
    skew = np.array([0.8, 0.1, 0.1])
    before = np.bincount(many.argmax(axis=1), minlength=3)
    after = np.bincount(F.prior_corrected_predictions(many, skew), minlength=3)
    assert after[0] < before[0] and after[1:].sum() > before[1:].sum()


def test_per_class_scaling_leaves_ovr_auc_unchanged_but_moves_accuracy():
    rng = np.random.default_rng(13)
    labels = labelled(rng, 300, 4)
    logits = rng.normal(size=(300, 4))
    logits[np.arange(300), labels] += 1.5
    probs = softmax(logits, axis=1)
    priors = np.array([0.55, 0.25, 0.15, 0.05])
    scaled = probs / priors  # p(i|x) / p(i): monotone in each column
    per_class = [roc_auc_score(labels == c, scaled[:, c]) for c in range(4)]
    original = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    assert np.mean(per_class) == pytest.approx(original)
    assert F.auc_ovr_macro_fast(scaled, labels) == pytest.approx(original)
    corrected = F.prior_corrected_predictions(probs, priors)
    assert (corrected == labels).mean() != (probs.argmax(axis=1) == labels).mean()


def test_renormalised_scaling_does_change_ovr_auc():
    # The invariance holds for the scaled scores, not for scaled-and-renormalised rows.
    rng = np.random.default_rng(14)
    labels = labelled(rng, 300, 4)
    probs = random_probs(rng, 300, 4)
    scaled = probs / np.array([0.55, 0.25, 0.15, 0.05])
    renormalised = scaled / scaled.sum(axis=1, keepdims=True)
    before = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
    after = roc_auc_score(labels, renormalised, multi_class="ovr", average="macro")
    assert after != pytest.approx(before)


# -- Wilson interval -------------------------------------------------------------------


def wilson_by_formula(k, n, confidence):
    z = norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(90, 100), (0, 10), (10, 10), (1, 3), (9000, 10000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy_and_the_formula(k, n, confidence):
    low, high = wilson_interval(k, n, confidence)
    ci = binomtest(k, n).proportion_ci(confidence, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert (low, high) == pytest.approx(wilson_by_formula(k, n, confidence), abs=1e-9)


def test_wilson_edges_and_empty():
    assert wilson_interval(0, 20)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert wilson_interval(20, 20)[0] < 1.0  # unlike the Wald interval, not degenerate
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_wilson_narrows_with_more_samples_and_widens_with_confidence():
    small = wilson_interval(45, 50)
    large = wilson_interval(4500, 5000)
    assert large[1] - large[0] < small[1] - small[0]
    w90 = wilson_interval(45, 50, 0.90)
    w99 = wilson_interval(45, 50, 0.99)
    assert w99[0] < w90[0] and w99[1] > w90[1]


@SETTINGS
@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_contains_the_proportion(kn):
    k, n = kn
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0


# -- bootstrap -------------------------------------------------------------------------


def _mean_of(x):
    return lambda idx: float(x[idx].mean())


def test_bootstrap_is_deterministic_for_a_seed():
    x = np.random.default_rng(15).normal(size=200)
    a = bootstrap_interval(_mean_of(x), 200, resamples=100, seed=7)
    b = bootstrap_interval(_mean_of(x), 200, resamples=100, seed=7)
    c = bootstrap_interval(_mean_of(x), 200, resamples=100, seed=8)
    assert a == b
    assert a != c


@pytest.mark.parametrize(("n", "method"), [(400, "BCa"), (3000, "percentile")])
def test_bootstrap_contains_the_estimate_and_matches_normal_theory(n, method):
    x = np.random.default_rng(16).normal(loc=2.0, size=n)
    low, high, name, note = bootstrap_interval(
        lambda i: x[i].mean(axis=-1), n, resamples=1000, seed=0, vectorized=True
    )
    assert name == f"bootstrap-{method}(1000)" and note == ""
    assert low < x.mean() < high
    se = x.std() / math.sqrt(n)
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_vectorised_and_looped_statistics_agree():
    x = np.random.default_rng(19).normal(size=150)
    looped = bootstrap_interval(_mean_of(x), 150, resamples=200, seed=3)
    vectorised = bootstrap_interval(
        lambda i: x[i].mean(axis=-1), 150, resamples=200, seed=3, vectorized=True
    )
    assert looped.ci == pytest.approx(vectorised.ci)


def test_bootstrap_reports_undefined_resamples_instead_of_dropping_them():
    x = np.random.default_rng(17).normal(size=100)

    def undefined_without_sample_0(idx):
        return float(x[idx].mean()) if (idx == 0).any() else math.nan

    result = bootstrap_interval(undefined_without_sample_0, 100, resamples=200, seed=0)
    assert math.isnan(result.low) and math.isnan(result.high)
    k = int(result.note.split()[2])
    assert 0 < k < 200 and result.note.endswith("of 200 resamples, so no interval")


def test_bootstrap_reports_a_degenerate_interval():
    result = bootstrap_interval(lambda i: 1.0, 20, resamples=100, seed=0)
    assert result.ci == (1.0, 1.0)
    assert result.note.startswith("degenerate interval [1, 1]")


def test_bootstrap_refuses_too_few_resamples():
    with pytest.raises(ValueError, match="resamples >= 100"):
        bootstrap_interval(_mean_of(np.ones(5)), 5, resamples=50, seed=0)


def test_bootstrap_of_no_samples_is_nan():
    def never(idx):
        raise AssertionError("statistic must not be called for n=0")

    result = bootstrap_interval(never, 0, resamples=100, seed=0)
    assert math.isnan(result.low) and math.isnan(result.high) and result.note == "no samples"


def test_bootstrap_resamples_indices_with_replacement_in_range():
    seen = []

    def record(idx):
        seen.append(idx)
        return float(len(np.unique(idx)))

    bootstrap_interval(record, 30, resamples=100, seed=0)
    assert all(len(i) in (29, 30) and i.min() >= 0 and i.max() < 30 for i in seen)  # +jackknife
    assert any(len(np.unique(i)) < 29 for i in seen)  # with replacement


def test_stratified_bootstrap_keeps_every_stratum_size():
    strata = np.r_[np.zeros(30, int), np.ones(10, int), np.full(5, 2)]
    seen = []

    def record(idx):
        counts = np.stack([(strata[idx] == s).sum(axis=-1) for s in range(3)], axis=-1)
        seen.extend(np.atleast_2d(counts))
        return idx.sum(axis=-1).astype(float)

    bootstrap_interval(record, 45, resamples=100, seed=0, strata=strata, vectorized=True)
    assert sum((c == [30, 10, 5]).all() for c in seen) >= 100  # resamples keep the sizes


def test_bootstrap_refuses_strata_too_small_to_resample():
    strata = np.r_[np.zeros(30, int), np.ones(2, int)]
    result = bootstrap_interval(
        lambda i: 0.5, 32, resamples=100, seed=0, strata=strata, stratum_names={1: "class 'b'"}
    )
    assert math.isnan(result.low)
    assert result.note == "too few samples to bootstrap: 2 in class 'b' (at least 5)"
    assert "too few" in bootstrap_interval(lambda i: 0.5, 4, resamples=100, seed=0).note


def test_bootstrap_of_auc_on_a_small_set_is_defined_when_stratified_by_class():
    rng = np.random.default_rng(18)
    labels = rng.permutation(np.r_[np.zeros(27, int), np.ones(27, int), [2] * 5])  # rare class
    probs = random_probs(rng, len(labels), 3)

    def auc(i):
        return F.auc_ovr_macro_fast(probs[i], labels[i])

    plain = bootstrap_interval(auc, len(labels), resamples=100, seed=1)
    assert math.isnan(plain.low) and "undefined in" in plain.note  # the rare class went missing
    low, high, method, note = bootstrap_interval(
        auc, len(labels), resamples=100, seed=1, strata=labels
    )
    assert (method, note) == ("stratified-bootstrap-BCa(100)", "")
    assert math.isfinite(low) and 0 <= low <= high <= 1


def test_worst_of_wilson_covers_the_selected_minimum_simultaneously():
    worst, (low, high) = worst_of_wilson([95, 80, 90], [100, 100, 100], 0.95)
    assert worst == 1
    plain = wilson_interval(80, 100, 0.95)
    adjusted = wilson_interval(80, 100, 1 - 0.05 / 3)
    assert (low, high) == pytest.approx(adjusted)
    assert low < plain[0] and high > plain[1]  # wider than the one-class interval
    assert worst_of_wilson([0, 0], [0, 0]) == (-1, (math.nan, math.nan))


def test_weighted_auc_matches_the_auc_of_the_resampled_set():
    rng = np.random.default_rng(20)
    probs = np.round(random_probs(rng, 300, 4), 1)  # many ties
    labels = rng.integers(0, 4, 300)
    idx = rng.integers(0, 300, 300)
    weights = resample_weights(idx[None], 300)
    parts = [F.weighted_auc_parts(probs[:, c], labels == c) for c in range(4)]
    got = np.mean([F.weighted_auc(weights, *p) for p in parts])
    assert got == pytest.approx(F.auc_ovr_macro_fast(probs[idx], labels[idx]))
    ece = np.abs(weights @ F.calibration_gaps(probs, labels)).sum() / 300
    assert ece == pytest.approx(F.expected_calibration_error(probs[idx], labels[idx]))
