"""Accuracy gates (specs/accuracy.md): sanity of the logits, top-1/top-5, balanced accuracy,
worst-class recall, one-vs-rest AUC, calibration, NLL and must-pass slices, per eval set.

Every metric reads the one cached forward pass; thresholds come from the model's profile,
and a metric the profile does not mention is recorded as informational.
"""

from __future__ import annotations

import pytest

from vcheck.evaluate import sanity
from vcheck.evaluate.accuracy import applicable_metrics
from vcheck.plugin import NOTHING_TO_CHECK, session_of

SUITE = "accuracy"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    profile = session.profile.accuracy
    if "metric" in metafunc.fixturenames:
        metrics = applicable_metrics(len(session.ref.cfg.classes), profile.class_priors is not None)
        metafunc.parametrize("metric", metrics)
    if "slice_metric" in metafunc.fixturenames:
        pairs = [(s.name, m) for s in profile.slices for m in (s.thresholds or {"top1": None})]
        if not pairs:
            metafunc.parametrize("slice_metric", [NOTHING_TO_CHECK])
        else:
            metafunc.parametrize("slice_metric", pairs, ids=[f"{s}-{m}" for s, m in pairs])


def test_logits_are_finite(predictions, eval_set, record_check):
    record_check(
        SUITE,
        "non_finite_fraction",
        sanity.non_finite_fraction(predictions),
        eval_set=eval_set.name,
        threshold=sanity.NON_FINITE_TOLERANCE,
    )


def test_outputs_are_logits_not_probabilities(predictions, eval_set, record_check):
    m = sanity.probability_like_rows(predictions)
    squash = "softmax" if predictions.output_kind == "softmax" else "sigmoid"
    record_check(
        SUITE,
        "probability_like_rows",
        m,
        eval_set=eval_set.name,
        threshold=sanity.PROBABILITY_LIKE_TOLERANCE,
        note=(
            f"{m.details['probability_like_rows']} of {m.n} output rows look like "
            f"probabilities ({m.details['rule']}); vcheck applies {squash} itself, so the model "
            f"must return logits: drop its final {squash}"
        )
        if m.value > sanity.PROBABILITY_LIKE_TOLERANCE.value
        else "",
    )


def test_batch_size_invariance(sanity_probe, eval_set, record_check):
    from vcheck.checks import Measurement

    m = Measurement(
        sanity_probe.batch_vs_single,
        sanity_probe.n,
        details={
            "argmax_changes": sanity_probe.batch_vs_single_argmax_changes,
            "compared": f"batch of {sanity_probe.n} vs one image at a time",
        },
        exact=True,
    )
    record_check(
        SUITE,
        "batch1_vs_batch_max_rel_diff",
        m,
        eval_set=eval_set.name,
        threshold=sanity.BATCH_TOLERANCE,
    )


def test_repeated_pass_is_identical(sanity_probe, eval_set, record_check):
    from vcheck.checks import Measurement

    m = Measurement(
        sanity_probe.repeat,
        sanity_probe.n,
        details={"argmax_changes": sanity_probe.repeat_argmax_changes},
        exact=True,
    )
    record_check(
        SUITE, "repeat_max_rel_diff", m, eval_set=eval_set.name, threshold=sanity.REPEAT_TOLERANCE
    )


def test_metric(accuracy, metric, eval_set, vcheck_profile, record_check):
    threshold = vcheck_profile.accuracy.thresholds.get(metric)
    m = accuracy.measure(metric)
    published = vcheck_profile.accuracy.published  # per-model profiles name their source
    note = published.note(metric, m.value, m.n) if published and threshold else ""
    record_check(SUITE, metric, m, eval_set=eval_set.name, threshold=threshold, note=note)


def test_slice(slice_metric, eval_set, vcheck_session, vcheck_profile, record_check):
    slice_name, metric = slice_metric
    evaluator = vcheck_session.accuracy(eval_set.name, slice_name)
    if evaluator is None:
        pytest.skip(f"slice {slice_name!r} has no samples in {eval_set.name}")
    spec = next(s for s in vcheck_profile.accuracy.slices if s.name == slice_name)
    record_check(
        SUITE,
        metric,
        evaluator.measure(metric),
        eval_set=eval_set.name,
        threshold=spec.thresholds.get(metric),
        slice=slice_name,
    )
