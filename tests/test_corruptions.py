"""Common corruptions: the ops (seeded, in range, worse with severity), the evaluation and its
cache, and the ``[corruptions]`` table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vcheck.cache import ResultCache
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.errors import VcheckError
from vcheck.evaluate.corruptions import CorruptionProfile, evaluate_corruptions, parse_profile
from vcheck.models import resolve_model
from vcheck.profiles import ProfileContext
from vcheck.robustness.corruptions import CORRUPTIONS, SEVERITIES, corrupt

CTX = ProfileContext(Path("p.toml"), tuple(str(i) for i in range(10)))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    return data.images(range(32))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_seeded_in_range_and_grows_with_severity(images, name):
    dist = []
    for s in SEVERITIES:
        out = corrupt(images, name, s, seed=5)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, corrupt(images, name, s, seed=5))
        dist.append(float((out - images).abs().mean()))
    assert dist[0] > 0
    assert dist[-1] > dist[0]  # severity 5 changes the images more than severity 1


def test_random_corruptions_depend_on_the_seed(images):
    for name in ("gaussian_noise", "shot_noise", "impulse_noise"):
        assert not torch.equal(corrupt(images, name, 3, seed=0), corrupt(images, name, 3, seed=1))


def test_rgb_and_large_images_take_the_imagenet_parameters():
    x = torch.rand(2, 3, 96, 96)
    for name in CORRUPTIONS:
        assert corrupt(x, name, 2).shape == x.shape
    grey = torch.full((1, 3, 96, 96), 0.2)
    assert torch.allclose(corrupt(grey, "brightness", 1), torch.full_like(grey, 0.3))


def test_evaluation_measures_and_caches(tmp_path):
    model = resolve_model("fmnist_mlp").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    eval_set = data.subset(list(range(120)))
    with torch.no_grad():
        clean = model.module(eval_set.images(range(120))).argmax(1).numpy()
    profile = CorruptionProfile(corruptions=("contrast", "gaussian_noise"), samples=50)
    cache = ResultCache(tmp_path, "corruptions")
    out = evaluate_corruptions(model, eval_set, clean, profile, seed=0, cache=cache, resamples=200)
    a = out.arrays
    assert a["predictions"].shape == (2, 5, 50) and not out.from_cache
    mean = out.mean_accuracy(0.95)
    assert mean.value == pytest.approx(float((a["predictions"] == a["labels"]).mean()))
    assert mean.ci[0] <= mean.value <= mean.ci[1]
    worst = out.worst(0.95)
    assert worst.value == min(out.corruption_accuracy(c, 0.95).value for c in out.corruptions)
    drop = out.relative_drop(0.95).value
    assert drop == pytest.approx((out.clean_accuracy - mean.value) / out.clean_accuracy)
    acc = out.accuracy("contrast", 5, 0.95)
    assert acc.value == float((a["predictions"][0, 4] == a["labels"]).mean())

    class Refuses(nn.Module):
        def forward(self, x):
            raise AssertionError("a warm run must not predict")

    again = evaluate_corruptions(
        replace(model, module=Refuses()), eval_set, clean, profile, seed=0, cache=cache
    )
    assert again.from_cache
    np.testing.assert_array_equal(again.arrays["predictions"], a["predictions"])
    gated = replace(profile, min_mean_accuracy=None)  # gates are not part of the key
    assert evaluate_corruptions(model, eval_set, clean, gated, seed=0, cache=cache).from_cache
    other = replace(profile, corruptions=("contrast",))
    assert not evaluate_corruptions(model, eval_set, clean, other, seed=0, cache=cache).from_cache


def test_the_profile_table_defaults_and_mistakes():
    d = parse_profile({}, CTX)
    assert d.corruptions == CORRUPTIONS and d.min_mean_accuracy is None
    p = parse_profile({"min_mean_accuracy": 0.7, "max_relative_drop": 0.2}, CTX)
    assert (p.min_mean_accuracy.value, p.max_relative_drop.direction) == (0.7, "max")
    for table, needle in [
        ({"corruptions": ["fog"]}, "fog"),
        ({"min_worst_accuracy": 0}, "can never fail"),
        ({"max_relative_drop": 1}, "can never fail"),
        ({"samples": -3}, "samples=-3"),
        ({"severities": [1]}, "severities"),
    ]:
        with pytest.raises(VcheckError) as info:
            parse_profile(table, CTX)
        assert needle in str(info.value)
