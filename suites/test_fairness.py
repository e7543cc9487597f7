"""Fairness gates (specs/fairness.md): subgroup accuracy, its gap, ratio and worst group,
SPD / DEO / EOD / AAOD / AED, and named pair gaps, per attribute of every eval set.

Attributes are the columns of an eval set's metadata table (``metadata`` setting, see
:mod:`vcheck.data.metadata`) and the image-derived slices (lighting, object size, object
brightness; :mod:`vcheck.evaluate.slices`), which every eval set has. Everything reads the one
cached forward pass; thresholds come from the profile's ``[fairness]`` table, and a metric it
does not mention is recorded as informational. Groups smaller than ``min_group_size`` are
excluded from the gaps and listed in every check's note and in the report.
"""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from vcheck.checks import Measurement
from vcheck.data.metadata import attribute_names, attributes_of
from vcheck.evaluate.fairness import (
    SUMMARY_SPECS,
    AttributeResult,
    describe_groups,
    evaluate_attribute,
    fairness_note,
    gap_note,
)
from vcheck.evaluate.slices import slice_groups, slice_statistics
from vcheck.functional.classification import topk_correct
from vcheck.functional.fairness import FAIRNESS_METRICS
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report import artifacts

SUITE = "fairness"


def _profile(session):
    return session.profile.table(SUITE)


def _attributes(session) -> dict[str, list[str]]:
    """Eval set -> its attributes: metadata columns first, then the image-derived slices."""
    slices = list(_profile(session).image_slices(session.ref.cfg.domain))
    return {
        name: [*attribute_names(session.settings.metadata.get(name)), *slices]
        for name in session.eval_set_names
    }


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    attributes = _attributes(session)
    profile = _profile(session)
    cases = [(e, a) for e, names in attributes.items() for a in names]
    if "fairness_attribute" in metafunc.fixturenames:
        metafunc.parametrize(
            "fairness_attribute", cases or [NOTHING_TO_CHECK], ids=[f"{a}-{e}" for e, a in cases]
        )
    if "summary_metric" in metafunc.fixturenames:
        metafunc.parametrize("summary_metric", list(SUMMARY_SPECS))
    if "fairness_pair" in metafunc.fixturenames:
        pairs = []
        for pair in profile.pairs:
            where = [e for e, names in attributes.items() if pair.attribute in names]
            pairs += [(e, pair.name) for e in where or session.eval_set_names[:1]]
        metafunc.parametrize(
            "fairness_pair", pairs or [NOTHING_TO_CHECK], ids=[f"{p}-{e}" for e, p in pairs]
        )
    if "profile_attribute" in metafunc.fixturenames:
        known = {a for names in attributes.values() for a in names}
        unknown = [a for a in profile.attributes if a not in known]
        metafunc.parametrize("profile_attribute", unknown or [NOTHING_TO_CHECK])


def _result(session, eval_set_name: str, attribute: str) -> AttributeResult:
    """The memoised measurements of one attribute of one eval set."""

    def compute() -> AttributeResult:
        eval_set = session.eval_sets[eval_set_name]
        predictions = session.predictions(eval_set_name)
        profile = _profile(session)
        table = attributes_of(eval_set)
        if table is not None and attribute in table.columns:
            column = table[attribute].loc[predictions.ids]
            groups, order = column.astype(str).tolist(), [str(c) for c in column.cat.categories]
            source = f"metadata {eval_set.extra.get('attribute_source', '')}"
        else:
            bins = profile.image_slices(session.ref.cfg.domain)[attribute]
            values = _slice_values(session, eval_set_name)[bins.measure]
            groups, order = slice_groups(values, bins)
            source = f"image slice {bins.measure}, edges {list(bins.edges)}"
        logits = predictions.logits.numpy()
        labels = predictions.labels.numpy()
        classes = session.model.cfg.num_classes
        return evaluate_attribute(
            attribute,
            source,
            groups,
            order,
            labels,
            logits.argmax(axis=1),
            num_classes=classes,
            min_group_size=profile.min_group_size_for(attribute),
            min_class_samples=profile.min_class_samples,
            pairs=[p for p in profile.pairs if p.attribute == attribute],
            top5_correct=topk_correct(logits, labels, 5) if classes > 5 else None,
            resamples=session.settings.bootstrap_resamples,
            seed=session.settings.seed,
            confidence=session.settings.confidence,
            eval_set=eval_set_name,
        )

    return session.memo((SUITE, eval_set_name, attribute), compute)


def _slice_values(session, eval_set_name: str) -> dict[str, np.ndarray]:
    def compute():
        values, from_cache = slice_statistics(
            session.eval_sets[eval_set_name],
            session.result_cache("slices"),
            session.model.cfg.preprocessing_key(),
            write=session.write_line,
        )
        if from_cache:
            session.write_line(f"vcheck: image slices of {eval_set_name} from cache")
        return values

    return session.memo((SUITE, "slices", eval_set_name), compute)


@pytest.fixture
def attribute_result(fairness_attribute, vcheck_session) -> AttributeResult:
    eval_set_name, attribute = fairness_attribute
    return _result(vcheck_session, eval_set_name, attribute)


def test_group_accuracy(fairness_attribute, attribute_result, record_check, record_artifact):
    """Per-group n and top-1 accuracy (Wilson), informational; the report draws them."""
    eval_set_name, attribute = fairness_attribute
    result = attribute_result
    for group in result.groups:
        if group.n == 0:
            continue
        status = "" if group.included else f"excluded from the gaps: n < {result.min_group_size}"
        details = {"top5": group.top5} if group.top5 is not None else {}
        record_check(
            SUITE,
            "group_accuracy",
            Measurement(group.accuracy, group.n, group.ci, "wilson", details),
            eval_set=eval_set_name,
            threshold=None,
            slice=f"{attribute}={group.name}",
            note=status,
        )
    included = result.included
    record_artifact(
        SUITE,
        f"group_accuracy[{attribute}]",
        "bars",
        artifacts.bars(
            [g.name for g in included],
            [g.accuracy for g in included],
            value_label=f"top-1 accuracy by {attribute} ({result.source})",
            low=[g.ci[0] for g in included],
            high=[g.ci[1] for g in included],
            n=[g.n for g in included],
            note=result.excluded_note() or f"no group below min_group_size={result.min_group_size}",
        ),
        eval_set=eval_set_name,
    )
    record_artifact(
        SUITE,
        f"groups[{attribute}]",
        "table",
        artifacts.table(
            ["group", "n", "accuracy", "low", "high", "status"],
            [
                [
                    row["group"],
                    row["n"],
                    row["accuracy"],
                    row["ci"][0],
                    row["ci"][1],
                    "included" if row["included"] else f"excluded (n < {result.min_group_size})",
                ]
                for row in describe_groups(result)
            ],
        ),
        eval_set=eval_set_name,
    )


def test_fairness(
    fairness_attribute, summary_metric, attribute_result, vcheck_profile, record_check
):
    """Gap, ratio, worst group and the five fairness metrics, gated by the profile."""
    eval_set_name, attribute = fairness_attribute
    result = attribute_result
    measurement = result.measurements[summary_metric]
    details = {**measurement.details, "groups": describe_groups(result), "source": result.source}
    if summary_metric == "worst_group_accuracy" and result.included:
        worst = measurement.details["worst_group"]
        note = f"worst group {result.group(worst).describe()}"
        if result.excluded:
            note += f"; {result.excluded_note()}"
    elif summary_metric in FAIRNESS_METRICS:
        note = fairness_note(result, measurement)
    else:
        note = gap_note(result)
    record_check(
        SUITE,
        summary_metric,
        Measurement(
            measurement.value, measurement.n, measurement.ci, measurement.ci_method, details
        ),
        eval_set=eval_set_name,
        threshold=vcheck_profile.table(SUITE).thresholds_for(attribute).get(summary_metric),
        slice=attribute,
        note=note,
    )


def test_pair_gap(fairness_pair, vcheck_session, record_check):
    """Accuracy of one named group minus another's, from the profile's [fairness.pairs]."""
    eval_set_name, pair_name = fairness_pair
    pair = next(p for p in _profile(vcheck_session).pairs if p.name == pair_name)
    names = _attributes(vcheck_session)[eval_set_name]
    if pair.attribute not in names:
        pytest.fail(
            f"[fairness.pairs.{pair.name}]: {eval_set_name} has no attribute "
            f"{pair.attribute!r} ({_suggest(pair.attribute, names)})",
            pytrace=False,
        )
    result = _result(vcheck_session, eval_set_name, pair.attribute)
    order = [g.name for g in result.groups]
    for name in pair.groups:
        if result.group(name) is None:
            pytest.fail(
                f"[fairness.pairs.{pair.name}]: attribute {pair.attribute!r} of {eval_set_name} "
                f"has no group {name!r} ({_suggest(name, order)})",
                pytrace=False,
            )
    first, second = (result.group(name) for name in pair.groups)
    note = f"{first.describe()} minus {second.describe()}"
    small = [g for g in (first, second) if not g.included]
    if small:
        note += "; not measured: " + ", ".join(
            f"{g.name} has n={g.n} < min_group_size={result.min_group_size}" for g in small
        )
    record_check(
        SUITE,
        f"pair_gap[{pair.name}]",
        result.pair_values[pair.name],
        eval_set=eval_set_name,
        threshold=pair.threshold,
        slice=pair.attribute,
        note=note,
    )


def test_profile_attribute_is_known(profile_attribute, vcheck_session):
    """A [fairness.attributes.X] table must name an attribute, or its thresholds never bite."""
    known = sorted({a for names in _attributes(vcheck_session).values() for a in names})
    pytest.fail(
        f"[fairness.attributes.{profile_attribute}] of {vcheck_session.profile.path} names no "
        f"attribute of any eval set ({_suggest(profile_attribute, known)})",
        pytrace=False,
    )


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}known: {', '.join(known) or 'none'}"
