"""Multi-label metrics on hand-built cases: ReaL top-1/top-5 with empty sets and subsets by
file name, Shankar et al.'s two definitions, both variable top-k variants, the forgiven
count, slices with error attribution, and the sigmoid metrics against scikit-learn."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    hamming_loss,
    roc_auc_score,
)

from vcheck.data.evalset import TensorEvalSet
from vcheck.data.label_sets import FileUniverse, ShankarEntry, load_mistakes
from vcheck.evaluate import multilabel as ML
from vcheck.functional import multilabel as F
from vcheck.predictions import Predictions

CLASSES = ("c0", "c1", "c2", "c3", "c4", "c5")
UNIVERSE = FileUniverse("img_{index:03d}.png", 8)


def predictions(ids, labels, logits, kind="softmax") -> Predictions:
    return Predictions(
        torch.tensor(logits, dtype=torch.float32),
        torch.tensor(labels),
        list(ids),
        kind,
        "key",
        0.0,
        False,
    )


def one_hot_logits(order: list[list[int]]) -> list[list[float]]:
    """Logits ranking the classes of each row in the given order (first = top-1)."""
    rows = []
    for ranking in order:
        row = [0.0] * len(CLASSES)
        for rank, c in enumerate(ranking):
            row[c] = 10.0 - rank
        rows.append(row)
    return rows


def real_spec(entries: dict, **thresholds) -> ML.LabelSetSpec:
    return ML.LabelSetSpec("real", "real", Path("real.json"), None, UNIVERSE, thresholds, entries)


def evaluator(preds: Predictions, spec: ML.LabelSetSpec, **kw) -> ML.LabelSetEvaluator:
    return ML.LabelSetEvaluator(preds, spec, CLASSES, resamples=100, **kw)


REAL = {
    "img_001.png": (0,),
    "img_002.png": (),  # raters agreed on nothing: excluded, counted
    "img_003.png": (1, 2),
    "img_004.png": (3,),
    "img_005.png": (4, 5),
}


def test_real_top1_excludes_empty_sets_and_counts_them():
    # original labels: 0, 2, 2, 3, 4; top-1: 0 (ok), 1 (empty set), 1 (in {1,2}), 5 (miss), 5
    preds = predictions(
        ["img_001.png", "img_002.png", "img_003.png", "img_004.png", "img_005.png"],
        [0, 2, 2, 3, 4],
        one_hot_logits([[0], [1], [1, 2], [5, 4, 3], [5, 4]]),
    )
    ev = evaluator(preds, real_spec(REAL))
    top1 = ev.measure("top1")
    assert (top1.value, top1.n) == (3 / 4, 4)
    assert ev.counts == {"samples": 5, "matched": 5, "excluded": 1, "unmatched": 0}
    assert top1.details["excluded"] == 1
    low, high = top1.ci
    assert low < 0.75 < high  # Wilson
    original = ev.measure("original_top1")
    assert (original.value, original.n) == (1 / 4, 4)  # same images: only img_001
    forgiven = ev.measure("forgiven_fraction")
    # three original-label errors (img_003, img_004, img_005), two accepted by the sets
    assert forgiven.details["forgiven"] == 2 and forgiven.details["original_errors"] == 3
    assert forgiven.value == pytest.approx(2 / 3) and forgiven.n == 3


def test_real_matches_any_subset_by_file_name_in_any_order():
    preds = predictions(
        ["val/b/img_005.png", "other.png", "a/img_003.png"],
        [4, 0, 2],
        one_hot_logits([[4], [0], [3, 2]]),
    )
    ev = evaluator(preds, real_spec(REAL))
    assert ev.files == ["img_005.png", "img_003.png"]
    assert ev.counts == {"samples": 3, "matched": 2, "excluded": 0, "unmatched": 1}
    assert ev.measure("top1").value == 0.5  # img_005 hit, img_003 missed (3 not in {1, 2})
    assert ev.measure("top5").value == 1.0


def test_real_top5_counts_any_of_the_top_five():
    preds = predictions(
        ["img_001.png", "img_004.png"],
        [0, 3],
        one_hot_logits([[5, 4, 3, 2, 1, 0], [0, 1, 2, 4, 5, 3]]),
    )
    ev = evaluator(preds, real_spec(REAL))
    # img_001: class 0 ranked 6th -> miss; img_004: class 3 ranked 6th -> miss
    assert ev.measure("top5").value == 0.0
    preds = predictions(["img_001.png"], [0], one_hot_logits([[5, 4, 3, 2, 0, 1]]))
    assert evaluator(preds, real_spec(REAL)).measure("top5").value == 1.0


def test_top_k_ties_break_toward_the_lower_index_like_top1():
    scores = np.zeros((1, 4))
    member = np.array([[False, False, True, False]])
    assert F.topk_in_set(scores, member, 2).tolist() == [False]
    assert F.topk_in_set(scores, member, 3).tolist() == [True]
    with pytest.raises(ValueError, match="k in"):
        F.topk_in_set(scores, member, 5)


SHANKAR = {
    # original class 0 (three images) and class 1 (one image)
    "img_001.png": ShankarEntry(frozenset({0}), frozenset(), frozenset({2})),
    "img_002.png": ShankarEntry(frozenset({0}), frozenset({3}), frozenset()),
    "img_003.png": ShankarEntry(frozenset({0, 4}), frozenset(), frozenset()),
    "img_004.png": ShankarEntry(frozenset({1}), frozenset(), frozenset({5})),
    "img_005.png": ShankarEntry(frozenset(), frozenset(), frozenset(), problematic=True),
    "img_006.png": ShankarEntry(frozenset(), frozenset({1}), frozenset()),  # nothing accepted
}


def shankar_case() -> ML.LabelSetEvaluator:
    spec = ML.LabelSetSpec("shankar", "shankar", Path("s.json"), None, UNIVERSE, {}, SHANKAR)
    preds = predictions(
        [f"img_{i:03d}.png" for i in range(1, 7)],
        [0, 0, 0, 1, 0, 1],
        # top-1: 2 (unclear), 3 (wrong), 4 (correct), 5 (unclear), -, -
        one_hot_logits([[2], [3], [4], [5], [0], [1]]),
    )
    return evaluator(preds, spec)


def test_shankar_definition_a_averages_correct_or_unclear_over_original_classes():
    ev = shankar_case()
    assert ev.counts["excluded"] == 2  # problematic, and the one with nothing acceptable
    a = ev.measure("top1_class_avg")
    # class 0: img_001 (unclear, ok), img_002 (wrong), img_003 (correct): 2/3; class 1: 1/1
    assert a.value == pytest.approx((2 / 3 + 1) / 2)
    assert a.n == 4 and a.ci_method.startswith("bootstrap")
    # four images are too few to bootstrap: no interval, and the check says why
    assert all(math.isnan(v) for v in a.ci)
    assert a.details["ci_note"] == "too few samples to bootstrap: 4 (at least 5)"


def test_shankar_definition_b_counts_correct_only_over_images():
    b = shankar_case().measure("top1_correct")
    assert (b.value, b.n) == (1 / 4, 4)  # only img_003's top-1 is in "correct"
    assert b.ci_method == "wilson"


def test_shankar_forgiven_uses_correct_or_unclear():
    ev = shankar_case()
    assert ev.measure("original_top1").value == 0.0
    forgiven = ev.measure("forgiven_fraction")
    assert forgiven.details["forgiven"] == 3 and forgiven.details["original_errors"] == 4


def test_variable_top_k_both_variants():
    scores = np.array(
        [
            [0.5, 0.3, 0.2, 0.0],  # set {0, 1}, k = 2: top-2 = {0, 1} -> match, 1.0
            [0.5, 0.3, 0.2, 0.0],  # set {0, 2}, k = 2: top-2 = {0, 1} -> no match, 0.5
            [0.1, 0.2, 0.3, 0.4],  # set {0, 1, 3}, k = 3: top-3 = {3, 2, 1} -> no, 2/3
            [0.1, 0.2, 0.3, 0.4],  # set {3}, k = 1 -> match, 1.0
            [0.1, 0.2, 0.3, 0.4],  # empty set -> not scored
        ]
    )
    member = F.membership([[0, 1], [0, 2], [0, 1, 3], [3], []], 4)
    match, recovered = F.variable_topk(scores, member)
    assert match.tolist() == [True, False, False, True, False]
    assert recovered[:4] == pytest.approx([1.0, 0.5, 2 / 3, 1.0])
    assert math.isnan(recovered[4])


def test_variable_top_k_on_an_evaluator():
    preds = predictions(
        ["img_003.png", "img_005.png", "img_001.png"],
        [1, 4, 0],
        one_hot_logits([[2, 1], [4, 0, 5], [1, 0]]),
    )
    ev = evaluator(preds, real_spec(REAL))
    match = ev.measure("vartopk_set_match")
    recovered = ev.measure("vartopk_recovered")
    # img_003 {1,2}: top-2 {2,1} match; img_005 {4,5}: top-2 {4,0} half; img_001 {0}: top-1 1
    assert (match.value, match.n) == (1 / 3, 3)
    assert recovered.value == pytest.approx((1 + 0.5 + 0) / 3)
    assert recovered.ci_method.startswith("bootstrap")


@given(
    st.lists(st.lists(st.integers(0, 4), max_size=5), min_size=1, max_size=8),
    st.integers(0, 2**31 - 1),
)
def test_variable_top_k_properties(sets, seed):
    scores = np.random.default_rng(seed).normal(size=(len(sets), 5))
    member = F.membership(sets, 5)
    match, recovered = F.variable_topk(scores, member)
    has = member.any(axis=1)
    assert not match[~has].any() and np.isnan(recovered[~has]).all()
    assert ((recovered[has] == 1.0) == match[has]).all()  # full recovery is a set match
    k1 = member.sum(axis=1) == 1  # k = 1: both variants are top-1 in the set
    top1 = F.topk_in_set(scores, member, 1)
    assert (match[k1] == top1[k1]).all()


def test_class_averaged_weights_classes_equally():
    assert F.class_averaged(np.array([1, 1, 1, 0]), np.array([0, 0, 0, 1])) == 0.5
    assert math.isnan(F.class_averaged(np.array([]), np.array([])))


def test_slice_and_error_attribution(tmp_path):
    mistakes_file = tmp_path / "mistakes.json"
    mistakes_file.write_text(
        '{"img_003.png": {"top_prediction": 3, "failure category": "Fine-grained error with'
        ' OOV", "failure severity": "Major"}, "img_004.png": {"top_prediction": 1, "failure'
        ' category": "Spurious Correlation", "failure severity": "Minor"}, "img_005.png":'
        ' {"top_prediction": 0, "failure category": "Non-prototypical", "failure severity":'
        ' "Borderline"}}'
    )
    mistakes = load_mistakes(mistakes_file, len(CLASSES), UNIVERSE)
    preds = predictions(
        ["img_001.png", "img_002.png", "img_003.png", "img_004.png", "img_005.png"],
        [0, 2, 2, 3, 4],
        # img_003: top-1 3 (error, recorded 3 -> attributed); img_004: 5 (error, recorded 1 ->
        # other prediction); img_005: 4 (accepted); img_001: 2 (error, no record)
        one_hot_logits([[2], [1], [3], [5], [4]]),
    )
    ev = evaluator(preds, real_spec(REAL))
    files = ("img_001.png", "img_002.png", "img_003.png", "img_004.png", "img_005.png")
    spec = ML.SliceSpec("m", "real", Path("m.json"), files, {}, mistakes_file, mistakes)
    on_slice = ev.on_slice(spec)
    assert on_slice.n == 4  # img_002 has an empty set
    assert on_slice.counts == {
        "slice_files": 5,
        "slice_files_in_eval_set": 5,
        "slice_files_excluded": 1,
    }
    assert on_slice.measure("top1").value == 0.25
    errors = on_slice.errors().set_index("file")
    assert errors.loc["img_003.png", "category"] == "Fine-grained with OOV"
    assert errors.loc["img_003.png", "severity"] == "Major"
    assert errors.loc["img_004.png", "category"] == ML.OTHER_PREDICTION
    assert errors.loc["img_001.png", "category"] == ML.NO_RECORD
    table = on_slice.attribution()
    assert table["errors"].sum() == 3 and table["share"].sum() == pytest.approx(1.0)
    assert set(table["category"]) == {"Fine-grained with OOV", ML.OTHER_PREDICTION, ML.NO_RECORD}
    shares = on_slice.error_shares()
    assert set(shares) == {
        "errors_fine_grained_with_oov",
        "errors_spurious_correlation",
        "errors_non_prototypical",
        "errors_major",
        "errors_minor",
        "errors_borderline",
        "errors_unattributed_no_recorded_mistake",
        "errors_unattributed_other_prediction",
    }
    assert shares["errors_major"].value == pytest.approx(1 / 3) and shares["errors_major"].n == 3
    assert shares["errors_spurious_correlation"].value == 0  # recorded, but another top-1
    assert shares["errors_unattributed_other_prediction"].details["errors"] == 1


def test_a_construction_mismatch_is_named():
    built = TensorEvalSet(
        name="set",
        ids=["img_001.png", "img_003.png"],
        labels=torch.tensor([0, 1]),
        classes=CLASSES,
        fingerprint="f",
        source="built",
        label_sets=[[0], [1]],
    )
    message = ML.construction_mismatch(built, real_spec(REAL))
    assert "img_003.png has classes [1, 2] there but [1] by construction" in message
    built.label_sets = [[0], [1, 2]]
    assert ML.construction_mismatch(built, real_spec(REAL)) is None
    built.label_sets = None  # sets not known by construction: nothing to compare
    assert ML.construction_mismatch(built, real_spec(REAL)) is None


# -- multi-label (sigmoid) models -----------------------------------------------------------------


def sigmoid_case(n: int = 60, seed: int = 0, resamples: int = 100, shift: float = 2.5):
    rng = np.random.default_rng(seed)
    sets = [tuple(sorted(set(rng.choice(6, size=rng.integers(1, 4)).tolist()))) for _ in range(n)]
    member = F.membership(sets, 6)
    logits = rng.normal(size=(n, 6)) + shift * member  # informative, imperfect scores
    universe = FileUniverse("img_{index:03d}.png", n)
    entries = {universe.name(i): s for i, s in enumerate(sets)}
    spec = ML.LabelSetSpec("real", "real", Path("r.json"), None, universe, {}, entries)
    preds = predictions(
        [universe.name(i) for i in range(n)],
        [s[0] for s in sets],
        logits.tolist(),
        kind="sigmoid",
    )
    ev = ML.LabelSetEvaluator(preds, spec, CLASSES, f1_threshold=0.6, resamples=resamples)
    probs = 1 / (1 + np.exp(-logits.astype(np.float32).astype(np.float64)))
    return ev, member, probs


def test_sigmoid_metrics_agree_with_scikit_learn():
    ev, member, probs = sigmoid_case()
    auc = [roc_auc_score(member[:, c], probs[:, c]) for c in range(6)]
    ap = [average_precision_score(member[:, c], probs[:, c]) for c in range(6)]
    pred = probs >= 0.6
    assert ev.measure("auc_macro").value == pytest.approx(np.mean(auc))
    assert ev.measure("map").value == pytest.approx(np.mean(ap))
    assert ev.measure("f1_micro").value == pytest.approx(f1_score(member, pred, average="micro"))
    assert ev.measure("f1_macro").value == pytest.approx(f1_score(member, pred, average="macro"))
    assert ev.measure("subset_accuracy").value == pytest.approx(accuracy_score(member, pred))
    assert ev.measure("hamming_loss").value == pytest.approx(hamming_loss(member, pred))
    worst = ev.measure("worst_class_auc")
    assert worst.value == pytest.approx(min(auc))
    assert worst.details["worst_class"] == CLASSES[int(np.argmin(auc))]
    for metric in ("auc_macro", "map", "f1_micro", "hamming_loss", "worst_class_auc"):
        low, high = ev.measure(metric).ci
        assert 0 <= low < high <= 1, metric


def test_per_class_auc_is_nan_where_undefined():
    targets = np.array([[1, 0], [1, 1], [1, 0]], dtype=bool)
    scores = np.array([[0.9, 0.1], [0.8, 0.7], [0.7, 0.2]])
    auc = F.per_class_auc(scores, targets)
    assert math.isnan(auc[0]) and auc[1] == 1.0  # class 0 has no negative image
    assert F.nan_mean(auc) == 1.0
    assert math.isnan(F.nan_mean(np.array([np.nan])))


def test_which_metrics_a_label_set_records():
    spec = real_spec(REAL)
    assert ML.label_set_metrics(spec, "softmax", 6) == list(ML.REAL_METRICS)
    assert ML.label_set_metrics(spec, "sigmoid", 6) == [*ML.REAL_METRICS, *ML.SIGMOID_METRICS]
    from vcheck.checks import Threshold

    gated = real_spec(REAL, map=Threshold(0.5, "min"))
    assert "map" in ML.label_set_metrics(gated, "softmax", 6)
    assert "top5" not in ML.label_set_metrics(spec, "softmax", 5)
    shankar = ML.LabelSetSpec("s", "shankar", Path("s"), None, UNIVERSE, {}, SHANKAR)
    assert ML.label_set_metrics(shankar, "sigmoid", 6) == list(ML.SHANKAR_METRICS)


def test_accuracy_suites_auc_takes_a_sigmoid_models_scores():
    from vcheck.functional import classification

    rng = np.random.default_rng(1)
    labels = np.arange(40) % 4
    scores = 1 / (1 + np.exp(-(rng.normal(size=(40, 4)) + 2 * np.eye(4)[labels])))
    expected = np.mean([roc_auc_score(labels == c, scores[:, c]) for c in range(4)])
    assert classification.auc_ovr_macro(scores, labels) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(8))
def test_weighted_metrics_equal_scikit_learn_on_the_repeated_images(seed):
    """A bootstrap resample is a weighting by draw counts: the vectorised metrics must give
    scikit-learn's value on the images repeated that many times (ties included)."""
    from vcheck.functional.classification import weighted_auc, weighted_auc_parts

    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(8, 60)), 4
    targets = rng.random((n, classes)) < 0.3
    scores = np.round(rng.random((n, classes)) + 0.3 * targets, 1)  # many tied scores
    weights = rng.integers(0, 3, (5, n)).astype(float)
    weights[:, 0] += 1  # never an empty resample
    ap = [
        F.weighted_average_precision(weights, *F.weighted_ap_parts(scores[:, c], targets[:, c]))
        for c in range(classes)
    ]
    auc = [
        weighted_auc(weights, *weighted_auc_parts(scores[:, c], targets[:, c]))
        for c in range(classes)
    ]
    for b, w in enumerate(weights):
        rep = np.repeat(np.arange(n), w.astype(int))
        s, t = scores[rep], targets[rep]
        for c in range(classes):
            expected_ap = average_precision_score(t[:, c], s[:, c]) if t[:, c].any() else math.nan
            assert ap[c][b] == pytest.approx(expected_ap, nan_ok=True)
            defined = 0 < t[:, c].sum() < len(t)
            expected_auc = roc_auc_score(t[:, c], s[:, c]) if defined else math.nan
            assert auc[c][b] == pytest.approx(expected_auc, nan_ok=True)
        for average in ("micro", "macro"):
            got = F.weighted_f1(weights, scores, targets, 0.5, average)[b]
            assert got == pytest.approx(F.f1(s, t, 0.5, average))
        assert F.weighted_hamming(weights, scores, targets, 0.5)[b] == pytest.approx(
            F.hamming(s, t, 0.5)
        )
    per_class = np.stack(auc)
    assert F.weighted_macro(auc) == pytest.approx(np.nanmean(per_class, axis=0), nan_ok=True)


def test_worst_class_auc_interval_covers_the_true_worst_auc_when_classes_tie():
    """Every class here has the same true AUC, Phi(1 / sqrt 2) = 0.760 (positives shifted by
    one standard deviation), so which class comes out worst is chance. The interval is
    Bonferroni-adjusted over the classes (as worst_class_recall) and covers the true worst
    AUC in 58 of these 60 seeded cases; the unadjusted interval covered 53 (0.88, under the
    95% it claims)."""
    from scipy.stats import norm

    true_auc = norm.cdf(1 / np.sqrt(2))
    covered = []
    for seed in range(60):
        ev, _, _ = sigmoid_case(n=200, seed=seed, resamples=400, shift=1.0)
        worst = ev.measure("worst_class_auc")
        assert worst.details["simultaneous_over"] == 6
        covered.append(worst.ci[0] <= true_auc <= worst.ci[1])
    assert np.mean(covered) >= 0.93
