"""The [patch] profile table: defaults, every key validated, gates per patch size."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcheck.checks import Threshold
from vcheck.errors import InvalidArgument, UnknownNameError
from vcheck.evaluate.patch import PatchCase, PatchProfile, parse_profile, select_images
from vcheck.models.zoo import FASHION_MNIST_CLASSES, fixtures_dir
from vcheck.profiles import ProfileContext, load_profile

CTX = ProfileContext(Path("p.toml"), FASHION_MNIST_CLASSES)


def test_an_absent_table_gives_informational_defaults():
    p = parse_profile({}, CTX)
    assert p == PatchProfile()
    assert p.threshold(0.05) is None
    assert [c.id for c in p.cases] == [
        "area0.02-center",
        "area0.02-random",
        "area0.05-center",
        "area0.05-random",
        "area0.1-center",
        "area0.1-random",
    ]


def test_every_setting_is_read():
    p = parse_profile(
        {
            "sizes": [0.1, 0.2],
            "locations": ["top_left", "random"],
            "max_asr": [0.3, 0.6],
            "attack": "per_class",
            "samples": 50,
            "fit_samples": 30,
            "steps": 7,
            "step_size": 0.1,
            "optimizer": "sign",
            "tv_weight": 0.5,
            "batch_size": 16,
            "distortion": 0.2,
            "lighting": "image",
            "examples": 0,
        },
        CTX,
    )
    assert p.cases == (
        PatchCase(0.1, "top_left"),
        PatchCase(0.1, "random"),
        PatchCase(0.2, "top_left"),
        PatchCase(0.2, "random"),
    )
    assert p.threshold(0.2) == Threshold(0.6, "max")
    assert (p.attack, p.optimizer, p.lighting, p.steps, p.examples) == (
        "per_class",
        "sign",
        "image",
        7,
        0,
    )
    assert "max_asr" not in p.settings() and p.settings()["tv_weight"] == 0.5


def test_one_max_asr_applies_to_every_size():
    p = parse_profile({"sizes": [0.05, 0.1], "max_asr": 0.4}, CTX)
    assert p.threshold(0.05) == p.threshold(0.1) == Threshold(0.4, "max")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"size": [0.1]}, "Unknown patch setting 'size'. Did you mean 'sizes'"),
        ({"sizes": [0.1, 1.5]}, "sizes=1.5 in \\[patch\\] of p.toml: expected a number in"),
        ({"sizes": []}, "sizes=\\[\\]"),
        ({"sizes": [0.1, 0.1]}, "each size at most once"),
        ({"locations": ["centre"]}, "Unknown location .* 'centre'. Did you mean 'center'"),
        ({"max_asr": [0.5]}, "expected one number per size \\(3\\)"),
        ({"max_asr": 1.0}, "max_asr=.* can never fail"),
        ({"max_asr": -0.1}, "can never pass"),
        ({"attack": "targeted"}, "Unknown attack"),
        ({"optimizer": "sgd"}, "Unknown optimizer"),
        ({"lighting": "sun"}, "Unknown lighting"),
        ({"steps": 0}, "steps=0 in \\[patch\\] of p.toml: expected an integer >= 1"),
        ({"step_size": -1}, "step_size=-1"),
        ({"tv_weight": -1}, "tv_weight=-1"),
        ({"distortion": 0.5}, "distortion=0.5 .* \\[0, 0.5\\)"),
        ({"examples": -1}, "examples=-1 .* >= 0"),
    ],
)
def test_mistakes_name_the_key_the_file_and_the_fix(table, message):
    with pytest.raises((InvalidArgument, UnknownNameError), match=message):
        parse_profile(table, CTX)


@pytest.mark.parametrize("model", ["fmnist_cnn", "fmnist_backdoor"])
def test_the_shipped_profiles_gate_every_patch_size(model):
    p = load_profile(fixtures_dir() / "profiles" / f"{model}.toml", FASHION_MNIST_CLASSES)
    patch = p.table("patch")
    assert len(patch.max_asr) == len(patch.sizes)
    assert "random" in patch.locations and len(patch.locations) >= 2


def test_judged_and_fit_images_are_disjoint_stratified_and_seeded():
    import torch

    labels = torch.arange(1000) % 10
    judged, fit = select_images(labels, 100, 50, seed=3)
    assert len(judged) == 100 and len(fit) == 50 and not set(judged) & set(fit)
    assert torch.bincount(labels[judged]).tolist() == [10] * 10
    assert select_images(labels, 100, 50, seed=3) == (judged, fit)
    assert select_images(labels, 100, 50, seed=4) != (judged, fit)
    small_judged, small_fit = select_images(labels[:60], 100, 50, seed=0)
    assert (len(small_judged), len(small_fit)) == (40, 20)  # split in proportion
    only, none = select_images(labels, 30, 0, seed=0)
    assert len(only) == 30 and none == []
