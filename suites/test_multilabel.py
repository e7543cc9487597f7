"""Multi-label correctness gates (specs/multilabel.md), per label set of the profile's
``[multilabel]`` table: ReaL top-1/top-5, Shankar et al.'s two definitions, variable top-k,
original-label accuracy and the errors the label set forgives; multi-label (sigmoid) models
add per-class AUC and AP, F1, subset accuracy and Hamming loss; named slices add a
must-pass accuracy and, with mistake metadata, the model's errors by category and severity.

Label sets are matched to eval-set samples by file name. Every metric reads one cached
forward pass: the session's for the model's eval sets, and for ``fmnist_multi`` (the
multi-object set built from Fashion-MNIST test, :mod:`vcheck.data.multi_object`) one pass
through the same prediction cache, memoised for the run. ``fmnist_multi`` is not one of the
session's eval sets, so the accuracy suite's single-label thresholds never apply to it.
"""

from __future__ import annotations

import pytest

from vcheck.data import multi_object
from vcheck.evaluate import multilabel as ML
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report import artifacts

SUITE = "multilabel"
# Eval sets this suite builds itself, and the model domain each needs.
AUXILIARY = {multi_object.NAME: "fashion_mnist"}


def _eval_set_name(session, spec: ML.LabelSetSpec) -> str:
    """The eval set a label set applies to; a name the run cannot provide stops collection."""
    __tracebackhide__ = True
    name = spec.eval_set or session.eval_set_names[0]
    domain = AUXILIARY.get(name)
    if name in session.eval_set_names or domain == session.ref.cfg.domain:
        return name
    known = [
        *session.eval_set_names,
        *(n for n, d in AUXILIARY.items() if d == session.ref.cfg.domain),
    ]
    raise pytest.UsageError(
        f"vcheck: eval_set={name!r} in [multilabel.label_sets.{spec.name}] of "
        f"{session.profile.path}: this run's eval sets are {', '.join(known)}; fix eval_set "
        'or add the eval set to the vcheck config (eval_sets = {name = "folder"})'
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    __tracebackhide__ = True
    session = session_of(metafunc.config)
    profile: ML.MultiLabelProfile = session.profile.table(SUITE)
    cfg = session.ref.cfg
    for spec in profile.label_sets.values():
        _eval_set_name(session, spec)
    if "label_set_metric" in metafunc.fixturenames:
        pairs = [
            (name, metric)
            for name, spec in profile.label_sets.items()
            for metric in ML.label_set_metrics(spec, cfg.output_kind, cfg.num_classes)
        ]
        _parametrize(metafunc, "label_set_metric", pairs)
    if "slice_metric" in metafunc.fixturenames:
        pairs = [(name, m) for name in profile.slices for m in ML.SLICE_METRICS]
        _parametrize(metafunc, "slice_metric", pairs)
    if "attributed_slice" in metafunc.fixturenames:
        names = [n for n, s in profile.slices.items() if s.mistakes is not None]
        metafunc.parametrize("attributed_slice", names or [NOTHING_TO_CHECK])


def _parametrize(metafunc: pytest.Metafunc, name: str, pairs: list[tuple[str, str]]) -> None:
    if not pairs:
        metafunc.parametrize(name, [NOTHING_TO_CHECK])
    else:
        metafunc.parametrize(name, pairs, ids=[f"{a}-{b}" for a, b in pairs])


# -- one cached pass per eval set, one evaluator per label set -------------------------------------


def _auxiliary(session, name: str):
    """The multi-object set and its predictions: one pass through the prediction cache."""
    from vcheck.data.evalset import stratified_indices
    from vcheck.data.fashion_mnist import load_fashion_mnist
    from vcheck.predictions import get_predictions

    s = session.settings
    source = load_fashion_mnist("test", s.data_root, s.cache_dir / "data")
    eval_set = multi_object.build_eval_set(source)
    if s.max_samples is not None and s.max_samples < len(eval_set):
        eval_set = eval_set.subset(stratified_indices(eval_set.labels, s.max_samples, s.seed))
    preds = get_predictions(
        session.model,
        eval_set,
        session.result_cache("predictions"),
        s.batch_size,
        s.num_workers,
        session.write_line,
    )
    if preds.from_cache:
        session.write_line(f"vcheck: {session.model.name} on {name}: predictions from cache")
    return preds, eval_set


def _predictions(session, name: str):
    if name in session.eval_set_names:
        return session.predictions(name), session.eval_sets[name]
    return session.memo((SUITE, "eval_set", name), lambda: _auxiliary(session, name))


def _evaluator(session, label_set: str) -> tuple[ML.LabelSetEvaluator, str]:
    profile: ML.MultiLabelProfile = session.profile.table(SUITE)
    spec = profile.label_sets[label_set]
    eval_set_name = _eval_set_name(session, spec)

    def build() -> ML.LabelSetEvaluator:
        preds, eval_set = _predictions(session, eval_set_name)
        mismatch = ML.construction_mismatch(eval_set, spec)
        if mismatch:
            pytest.fail(mismatch, pytrace=False)
        s = session.settings
        return ML.LabelSetEvaluator(
            preds,
            spec,
            session.model.classes,
            f1_threshold=profile.f1_threshold,
            resamples=s.bootstrap_resamples,
            seed=s.seed,
            confidence=s.confidence,
        )

    return session.memo((SUITE, "label_set", label_set), build), eval_set_name


def _note(spec: ML.LabelSetSpec, metric: str) -> str:
    return f"label set {spec.name} ({spec.path.name}), {ML.DESCRIPTIONS.get(metric, metric)}"


def _skip_if_empty(evaluator: ML.LabelSetEvaluator, eval_set: str) -> None:
    if evaluator.n == 0:
        c = evaluator.counts
        pytest.skip(
            f"label set {evaluator.spec.name}: none of the {c['samples']} samples of "
            f"{eval_set} is scored ({c['matched']} matched by file name, {c['excluded']} of "
            f"them excluded); files look like {evaluator.spec.universe.name(0)!r}"
        )


# -- tests -----------------------------------------------------------------------------------------


def test_label_set(label_set_metric, vcheck_session, record_check, record_artifact):
    name, metric = label_set_metric
    evaluator, eval_set = _evaluator(vcheck_session, name)
    _skip_if_empty(evaluator, eval_set)
    spec = evaluator.spec
    m = evaluator.measure(metric)
    if metric == "forgiven_fraction":
        record_artifact(
            SUITE, f"summary/{name}", "table", _summary(evaluator, spec), eval_set=eval_set
        )
    if metric in ("auc_macro", "map"):
        per_class = evaluator.per_class_auc if metric == "auc_macro" else evaluator.per_class_ap
        record_artifact(
            SUITE,
            f"per_class_{'auc' if metric == 'auc_macro' else 'ap'}/{name}",
            "bars",
            artifacts.bars(
                vcheck_session.model.classes,
                per_class,
                value_label="ROC AUC" if metric == "auc_macro" else "average precision",
            ),
            eval_set=eval_set,
        )
    record_check(
        SUITE,
        metric,
        m,
        eval_set=eval_set,
        threshold=spec.thresholds.get(metric),
        slice=name,
        note=_note(spec, metric),
    )


def _summary(evaluator: ML.LabelSetEvaluator, spec: ML.LabelSetSpec) -> dict:
    """Multi-label accuracy beside original-label accuracy, and what was forgiven."""
    headline = "top1" if spec.format == "real" else "top1_class_avg"
    rows = []
    for metric in (headline, "original_top1"):
        m = evaluator.measure(metric)
        rows.append([metric, m.value, m.ci[0], m.ci[1], m.n])
    forgiven = evaluator.measure("forgiven_fraction")
    c, d = evaluator.counts, forgiven.details
    return artifacts.table(
        ["metric", "value", "low", "high", "n"],
        [
            *rows,
            [
                "forgiven (original-label errors the set accepts)",
                d["forgiven"],
                None,
                None,
                d["original_errors"],
            ],
            ["excluded (empty or problematic)", c["excluded"], None, None, c["matched"]],
            ["not in the label file", c["unmatched"], None, None, c["samples"]],
        ],
    )


def test_slice(slice_metric, vcheck_session, vcheck_profile, record_check):
    name, metric = slice_metric
    spec = vcheck_profile.table(SUITE).slices[name]
    evaluator, eval_set = _evaluator(vcheck_session, spec.label_set)
    on_slice = evaluator.on_slice(spec)
    if on_slice.n == 0:
        pytest.skip(
            f"slice {name}: none of its {len(spec.files)} files is a scored sample of {eval_set}"
        )
    record_check(
        SUITE,
        metric,
        on_slice.measure(metric),
        eval_set=eval_set,
        threshold=spec.thresholds.get(metric),
        slice=f"{spec.label_set}/{name}",
        note=f"slice {name} ({spec.path.name}) scored by {_note(evaluator.spec, metric)}",
    )


def test_error_attribution(
    attributed_slice, vcheck_session, vcheck_profile, record_check, record_artifact
):
    spec = vcheck_profile.table(SUITE).slices[attributed_slice]
    evaluator, eval_set = _evaluator(vcheck_session, spec.label_set)
    on_slice = evaluator.on_slice(spec)
    if on_slice.n == 0:
        pytest.skip(f"slice {attributed_slice}: no scored sample in {eval_set}")
    table = on_slice.attribution()
    record_artifact(
        SUITE,
        f"errors_by_category/{attributed_slice}",
        "table",
        artifacts.table(list(table.columns), table.to_numpy().tolist()),
        eval_set=eval_set,
    )
    where = f"{spec.label_set}/{attributed_slice}"
    confidence = vcheck_session.settings.confidence
    for metric, m in on_slice.error_shares(confidence).items():
        record_check(SUITE, metric, m, eval_set=eval_set, threshold=None, slice=where)
