"""Adversarial-patch robustness (specs/robustness.md, "Adversarial patch"), REAP-style.

Per eval set, patch size (fraction of the image area) and location (fixed positions and a
random one), from the profile's ``[patch]`` table: a patch optimised through a realistic
renderer (relighting, random perspective warp, compositing) and judged on fresh renderings,
beside a uniform-noise patch of the same size rendered identically (the occlusion baseline).
Gate: the adversarial patch's attack success rate at most the profile's ``max_asr`` of that
size. Accuracy under each patch and the noise patch's ASR are informational.
"""

from __future__ import annotations

import pytest

from vcheck.evaluate.patch import PatchCase, evaluate_case
from vcheck.plugin import NOTHING_TO_CHECK, session_of
from vcheck.report import artifacts

SUITE = "patch"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    session = session_of(metafunc.config)
    profile = session.profile.table("patch")
    single_label = session.ref.cfg.output_kind == "softmax"  # success: a changed top-1 label
    if "patch_case" in metafunc.fixturenames:
        cases = list(profile.cases) if single_label else [NOTHING_TO_CHECK]
        metafunc.parametrize("patch_case", cases, ids=[getattr(c, "id", c) for c in cases])
    if "patch_location" in metafunc.fixturenames:
        locations = list(profile.locations) if single_label else [NOTHING_TO_CHECK]
        metafunc.parametrize("patch_location", locations)


def _outcome(session, eval_set, case: PatchCase):
    profile = session.profile.table("patch")

    def compute():
        clean = session.predictions(eval_set.name).logits.argmax(1).numpy()
        return evaluate_case(
            session.model,
            eval_set,
            clean,
            case,
            profile,
            seed=session.settings.seed,
            cache=session.result_cache("patch"),
            write=session.write_line,
        )

    return session.memo(("patch", eval_set.name, case), compute)


@pytest.fixture
def patch_outcome(patch_case, eval_set, vcheck_session):
    return _outcome(vcheck_session, eval_set, patch_case)


def _images(outcome, classes):
    """The universal patch as optimised (before lighting and warp), then fooled images."""
    a = outcome.arrays
    items = []
    if a["patches"].shape[0] == 1:
        items.append({"image": a["patches"][0], "caption": "the patch, as printed"})
    for i, image in zip(a["example_index"], a["example_images"], strict=True):
        true, clean, patched = (classes[int(a[k][i])] for k in ("labels", "clean", "adversarial"))
        items.append(
            {
                "image": image / 255.0,
                "caption": f"{true}: predicted {patched} with the patch ({clean} without)",
                "true": true,
                "clean_prediction": clean,
                "patched_prediction": patched,
            }
        )
    return artifacts.images(items)


def test_adversarial_patch(patch_outcome, patch_case, eval_set, vcheck_session, record_check):
    confidence = vcheck_session.settings.confidence
    profile = vcheck_session.profile.table("patch")
    label = patch_case.label
    record_check(
        SUITE,
        f"accuracy_under_patch[{label}]",
        patch_outcome.accuracy("adversarial", confidence),
        eval_set=eval_set.name,
        threshold=None,
    )
    h, w = patch_outcome.patch_size
    noise = patch_outcome.asr("noise", confidence).value
    asr = patch_outcome.asr("adversarial", confidence)
    note = f"{h}x{w}-pixel {profile.attack} patch; a noise patch of that size: ASR {noise:.4f}"
    if asr.details["fooled_mostly_to"] is not None:
        share = asr.details["fooled_mostly_to_share"]
        note += f"; fooled images mostly predicted {asr.details['fooled_mostly_to']} ({share:.0%})"
    record_check(
        SUITE,
        f"asr[{label}]",
        asr,
        eval_set=eval_set.name,
        threshold=profile.threshold(patch_case.area),
        note=note,
    )


def test_noise_patch(patch_outcome, patch_case, eval_set, vcheck_session, record_check):
    confidence = vcheck_session.settings.confidence
    label = patch_case.label
    record_check(
        SUITE,
        f"accuracy_under_noise_patch[{label}]",
        patch_outcome.accuracy("noise", confidence),
        eval_set=eval_set.name,
        threshold=None,
    )
    record_check(
        SUITE,
        f"asr_noise[{label}]",
        patch_outcome.asr("noise", confidence),
        eval_set=eval_set.name,
        threshold=None,
    )


def test_fooled_examples(patch_outcome, patch_case, eval_set, vcheck_model, record_artifact):
    """The patch and a few images it fooled (none, when it fooled none)."""
    record_artifact(
        SUITE,
        f"fooled[{patch_case.label}]",
        "images",
        _images(patch_outcome, vcheck_model.classes),
        eval_set=eval_set.name,
    )


def test_asr_against_patch_size(patch_location, eval_set, vcheck_session, record_artifact):
    """ASR against patch size at one location, adversarial and noise patches."""
    profile = vcheck_session.profile.table("patch")
    confidence = vcheck_session.settings.confidence
    curves = []
    for kind in ("adversarial", "noise"):
        ms = [
            _outcome(vcheck_session, eval_set, PatchCase(a, patch_location)).asr(kind, confidence)
            for a in profile.sizes
        ]
        curves.append(
            {
                "label": f"{kind} patch",
                "x": list(profile.sizes),
                "y": [m.value for m in ms],
                "low": [m.ci[0] for m in ms],
                "high": [m.ci[1] for m in ms],
            }
        )
    record_artifact(
        SUITE,
        f"asr_vs_size[location={patch_location}]",
        "series",
        artifacts.series("patch area (fraction of the image)", "attack success rate", curves),
        eval_set=eval_set.name,
    )
