"""Common corruptions (specs/robustness.md, "Common corruptions"), ImageNet-C style.

Per eval set, on a seeded class-stratified sample: the eight corruptions at five severities
(the profile's ``[corruptions]`` table may choose fewer); accuracy per corruption and
severity; mean corruption accuracy and its relative drop against clean accuracy; gates on the
mean, on the worst corruption and on the drop.
"""

from __future__ import annotations

import pytest

from vcheck.evaluate.corruptions import CorruptionOutcome, evaluate_corruptions
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report import artifacts
from vcheck.robustness.corruptions import SEVERITIES

SUITE = "corruptions"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    profile = session.profile.table("corruptions")
    single_label = session.ref.cfg.output_kind == "softmax"
    if "corruption" in metafunc.fixturenames:
        names = list(profile.corruptions) if single_label else [NOTHING_TO_CHECK]
        metafunc.parametrize("corruption", names)
    if "summary" in metafunc.fixturenames:
        metafunc.parametrize(
            "summary", ["mean", "worst", "drop"] if single_label else [NOTHING_TO_CHECK]
        )


@pytest.fixture
def corruption_outcome(eval_set, vcheck_session) -> CorruptionOutcome:
    s = vcheck_session

    def compute():
        return evaluate_corruptions(
            s.model,
            eval_set,
            s.predictions(eval_set.name).logits.argmax(1).numpy(),
            s.profile.table("corruptions"),
            seed=s.settings.seed,
            cache=s.result_cache("corruptions"),
            resamples=s.settings.bootstrap_resamples,
            write=s.write_line,
        )

    return s.memo(("corruptions", eval_set.name), compute)


def test_corruption_accuracy(
    corruption_outcome, corruption, eval_set, vcheck_session, record_check
):
    """Accuracy under one corruption, mean over severities (informational; the per-severity
    accuracies are in the details and the report's table)."""
    confidence = vcheck_session.settings.confidence
    m = corruption_outcome.corruption_accuracy(corruption, confidence)
    per = [corruption_outcome.accuracy(corruption, s, confidence).value for s in SEVERITIES]
    details = dict(m.details, per_severity=[round(v, 6) for v in per])
    record_check(
        SUITE,
        f"accuracy[{corruption}]",
        type(m)(m.value, m.n, m.ci, m.ci_method, details),
        eval_set=eval_set.name,
        threshold=None,
    )


def test_summary(corruption_outcome, summary, eval_set, vcheck_session, record_check):
    """Gates: mean corruption accuracy, the worst corruption, the relative drop."""
    confidence = vcheck_session.settings.confidence
    profile = vcheck_session.profile.table("corruptions")
    clean = corruption_outcome.clean_accuracy
    if summary == "mean":
        m = corruption_outcome.mean_accuracy(confidence)
        metric, threshold, note = "mean_accuracy", profile.min_mean_accuracy, f"clean {clean:.4f}"
    elif summary == "worst":
        m = corruption_outcome.worst(confidence)
        metric, threshold = "worst_corruption_accuracy", profile.min_worst_accuracy
        note = f"worst: {m.details['worst_corruption']}"
    else:
        m = corruption_outcome.relative_drop(confidence)
        metric, threshold, note = "relative_drop", profile.max_relative_drop, f"clean {clean:.4f}"
    record_check(SUITE, metric, m, eval_set=eval_set.name, threshold=threshold, note=note)


def test_accuracy_by_severity(corruption_outcome, eval_set, vcheck_session, record_artifact):
    """Accuracy per corruption and severity: one curve per corruption, and the table."""
    confidence = vcheck_session.settings.confidence
    out = corruption_outcome
    curves, rows = [], []
    for name in out.corruptions:
        ms = [out.accuracy(name, s, confidence) for s in SEVERITIES]
        curves.append(
            {
                "label": name,
                "x": [0, *SEVERITIES],
                "y": [out.clean_accuracy, *(m.value for m in ms)],
            }
        )
        rows.append([name, *(round(m.value, 4) for m in ms)])
    record_artifact(
        SUITE,
        "accuracy_vs_severity",
        "series",
        artifacts.series("severity (0: clean)", "accuracy", curves),
        eval_set=eval_set.name,
    )
    record_artifact(
        SUITE,
        "accuracy_by_corruption_and_severity",
        "table",
        artifacts.table(["corruption", *(f"severity {s}" for s in SEVERITIES)], rows),
        eval_set=eval_set.name,
    )
