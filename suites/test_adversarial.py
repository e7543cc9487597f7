"""Adversarial robustness (specs/robustness.md, "Adversarial"), with foolbox 3.

Per eval set and threat model (L-inf, L2) of the profile's ``[adversarial]`` table, on a
seeded class-stratified sample: robust accuracy at each epsilon (the per-sample worst case
over FGSM and PGD on cross-entropy and margin losses, with restarts), gated by the profile's
``min_robust_accuracy``; the median size of the smallest L2 perturbation (DeepFool); and the
sanity gates that tell real robustness from obfuscated gradients. A model that fails one gets
"robustness numbers cannot be trusted: <which gate>".
"""

from __future__ import annotations

import numpy as np
import pytest

from vcheck.evaluate.adversarial import GATES, ThreatOutcome, evaluate_threat_model
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report import artifacts

SUITE = "adversarial"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    profile = session.profile.table("adversarial")
    single_label = session.ref.cfg.output_kind == "softmax"  # broken: a changed top-1 label
    norms = [t.norm for t in profile.threat_models] if single_label else [NOTHING_TO_CHECK]
    if "norm" in metafunc.fixturenames:
        metafunc.parametrize("norm", norms)
    if "point" in metafunc.fixturenames:  # (norm, index of the epsilon)
        points = [(t.norm, k) for t in profile.threat_models for k in range(1, len(t.epsilons) + 1)]
        ids = [f"{n}-eps{profile.threat_model(n).epsilons[k - 1]:g}" for n, k in points]
        if not single_label:
            points, ids = [NOTHING_TO_CHECK], [NOTHING_TO_CHECK]
        metafunc.parametrize("point", points, ids=ids)
    if "gate" in metafunc.fixturenames:
        metafunc.parametrize("gate", list(GATES))


def _outcome(session, eval_set, norm: str) -> ThreatOutcome:
    profile = session.profile.table("adversarial")

    def compute():
        clean = session.predictions(eval_set.name).logits.argmax(1).numpy()
        return evaluate_threat_model(
            session.model,
            eval_set,
            clean,
            profile.threat_model(norm),
            profile,
            seed=session.settings.seed,
            cache=session.result_cache("adversarial"),
            write=session.write_line,
        )

    return session.memo(("adversarial", eval_set.name, norm), compute)


@pytest.fixture
def threat_outcome(norm, eval_set, vcheck_session) -> ThreatOutcome:
    return _outcome(vcheck_session, eval_set, norm)


def _label(norm: str, eps: float) -> str:
    return f"{norm},eps={eps:g}"


def test_robust_accuracy(point, eval_set, vcheck_session, record_check):
    """Robust accuracy at one epsilon of one threat model."""
    norm, k = point
    outcome = _outcome(vcheck_session, eval_set, norm)
    m = outcome.robust_accuracy(k, vcheck_session.settings.confidence)
    broken = ", ".join(f"{v} by {a}" for a, v in m.details["broken_by"].items() if v)
    record_check(
        SUITE,
        f"robust_accuracy[{_label(norm, outcome.epsilons[k])}]",
        m,
        eval_set=eval_set.name,
        threshold=outcome.threat_model.threshold(k - 1),
        note=f"worst case over the attacks; broken: {broken or 'none'}",
    )


def test_minimal_perturbation(eval_set, vcheck_session, record_check):
    """Median L2 size of the smallest perturbation DeepFool finds (informational)."""
    norm = vcheck_session.profile.table("adversarial").minimal_norm_with
    if norm is None or vcheck_session.ref.cfg.output_kind != "softmax":
        pytest.skip("minimal_norm = false in the profile's [adversarial] table")
    record_check(
        SUITE,
        "median_min_l2",
        _outcome(vcheck_session, eval_set, norm).median_l2(),
        eval_set=eval_set.name,
        threshold=None,
    )


def test_sanity(threat_outcome, norm, gate, eval_set, record_check):
    """One obfuscated-gradient gate (Athalye et al.): its failure means the robust
    accuracies of this threat model cannot be trusted."""
    from vcheck.checks import Measurement, Threshold

    g = threat_outcome.gates[gate]
    record_check(
        SUITE,
        f"sanity[{norm},{gate}]",
        Measurement(g.value, g.n, None, None, {"gate": gate}),
        eval_set=eval_set.name,
        threshold=Threshold(g.ceiling, "max"),
        note=g.note(),
    )


def test_robust_accuracy_curve(norm, eval_set, vcheck_session, record_artifact):
    """Robust accuracy against epsilon, epsilon 0 (clean accuracy) included."""
    outcome = _outcome(vcheck_session, eval_set, norm)
    confidence = vcheck_session.settings.confidence
    ms = [outcome.robust_accuracy(k, confidence) for k in range(len(outcome.epsilons))]
    curve = {
        "label": f"{norm} worst case (FGSM, PGD)",
        "x": outcome.epsilons,
        "y": [m.value for m in ms],
        "low": [m.ci[0] for m in ms],
        "high": [m.ci[1] for m in ms],
    }
    record_artifact(
        SUITE,
        f"robust_accuracy_vs_eps[{norm}]",
        "series",
        artifacts.series(f"epsilon ({norm}, pixel space)", "robust accuracy", [curve]),
        eval_set=eval_set.name,
    )


def test_adversarial_examples(norm, eval_set, vcheck_session, vcheck_model, record_artifact):
    """A few examples per class that broke the model: clean | adversarial, both predictions."""
    outcome = _outcome(vcheck_session, eval_set, norm)
    a = outcome.arrays
    classes = vcheck_model.classes
    items = []
    for j, eps, adv, pred in zip(
        a["example_index"], a["example_eps"], a["example_images"], a["example_pred"], strict=True
    ):
        sample = int(j)
        clean_img = eval_set.images([int(a["ids"][sample])])[0].numpy()
        gap = np.ones((clean_img.shape[0], clean_img.shape[1], 2), np.float32)
        pair = np.concatenate([clean_img, gap, adv / 255.0], axis=2)
        true = classes[int(a["labels"][sample])]
        clean = classes[int(a["clean"][sample])]
        items.append(
            {
                "image": pair,
                "caption": f"{true}: {clean} clean | {classes[int(pred)]} at {norm} eps {eps:g}",
                "true": true,
                "clean_prediction": clean,
                "adversarial_prediction": classes[int(pred)],
                "epsilon": float(eps),
            }
        )
    record_artifact(
        SUITE,
        f"adversarial_examples[{norm}]",
        "images",
        artifacts.images(items),
        eval_set=eval_set.name,
    )
