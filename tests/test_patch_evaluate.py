"""One patch case end to end on a small sample: every attack mode, the cache, the measurements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vcheck.cache import ResultCache
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.evaluate.patch import PatchCase, PatchProfile, evaluate_case
from vcheck.models import resolve_model

pytestmark = pytest.mark.trains


@pytest.fixture(scope="module")
def setup():
    model = resolve_model("fmnist_mlp").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    eval_set = data.subset(list(range(80)))
    with torch.no_grad():
        clean = model.module(eval_set.images(range(80))).argmax(1).numpy()
    return model, eval_set, clean


def _profile(**kw) -> PatchProfile:
    base = {"samples": 30, "fit_samples": 30, "steps": 4, "batch_size": 16, "lighting": "image"}
    return PatchProfile(**{**base, **kw})


@pytest.mark.parametrize(
    ("attack", "patches_shape"),
    [("universal", (1, 1, 9, 9)), ("per_class", (10, 1, 9, 9)), ("per_image", (30, 1, 9, 9))],
)
def test_each_attack_mode_yields_predictions_patches_and_fooled_examples(
    setup, tmp_path, attack, patches_shape
):
    model, eval_set, clean = setup
    case = PatchCase(0.1, "center")
    lines: list[str] = []
    out = evaluate_case(
        model,
        eval_set,
        clean,
        case,
        _profile(attack=attack),
        seed=0,
        cache=ResultCache(tmp_path, "patch"),
        write=lines.append,
    )
    a = out.arrays
    assert not out.from_cache and out.n == 30 and out.patch_size == (9, 9)
    assert a["patches"].shape == patches_shape
    if attack == "per_image":
        assert a["n_fit"] == 0  # each patch is fitted on its own image
    else:
        assert 20 <= a["n_fit"] <= 30  # the fit images the model gets right
    assert any(
        line.startswith(f"vcheck: patch {attack} area=0.1,location=center") for line in lines
    )
    fooled = (a["clean"] == a["labels"]) & (a["adversarial"] != a["labels"])
    assert a["example_index"].tolist() == np.flatnonzero(fooled)[:4].tolist()
    assert a["example_images"].shape == (len(a["example_index"]), 1, 28, 28)
    k, n = out.asr_counts("adversarial")
    asr = out.asr("adversarial", 0.95)
    assert (k, n) == (int(fooled.sum()), int((a["clean"] == a["labels"]).sum()))
    assert asr.ci[0] <= asr.value <= asr.ci[1] and asr.n == n
    acc = out.accuracy("noise", 0.95)
    assert acc.n == 30 and acc.value == float((a["noise"] == a["labels"]).mean())


def test_the_cache_returns_the_same_case_and_keys_on_settings(setup, tmp_path):
    model, eval_set, clean = setup
    cache = ResultCache(tmp_path, "patch")
    case = PatchCase(0.05, "random")
    first = evaluate_case(model, eval_set, clean, case, _profile(), seed=0, cache=cache)
    lines: list[str] = []
    again = evaluate_case(
        model, eval_set, clean, case, _profile(), seed=0, cache=cache, write=lines.append
    )
    assert again.from_cache and lines == [
        f"vcheck: patch universal area=0.05,location=random on {eval_set.name}: from cache"
    ]
    for name, value in first.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], value)
    gated = _profile(max_asr=())  # thresholds are not part of the key
    assert evaluate_case(model, eval_set, clean, case, gated, seed=0, cache=cache).from_cache
    for other in (_profile(steps=3), _profile(lighting="covered")):
        assert not evaluate_case(
            model, eval_set, clean, case, other, seed=0, cache=cache
        ).from_cache
    assert not evaluate_case(
        model, eval_set, clean, case, _profile(), seed=1, cache=cache
    ).from_cache
