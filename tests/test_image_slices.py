"""Image-derived slices: the per-image measures, their bins, the cache, and the Fashion-MNIST
default edges (every slice keeps enough test images per group)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcheck.cache import ResultCache
from vcheck.data.evalset import TensorEvalSet
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.evaluate.slices import (
    DEFAULT_SLICES,
    NO_FOREGROUND,
    WAKE_VISION,
    default_slices,
    slice_groups,
    slice_statistics,
)
from vcheck.functional.image_slices import assign_bins, image_statistics


def test_lighting_is_the_mean_gray_level_as_pil_computes_it():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (2, 3, 8, 8)).astype(np.uint8)
    ours = image_statistics(rgb / 255.0)["lighting"]
    pil = [np.asarray(Image.fromarray(np.moveaxis(im, 0, -1)).convert("L")).mean() for im in rgb]
    assert ours == pytest.approx(pil, abs=0.5)  # PIL rounds each pixel to an integer


def test_object_measures_use_the_background_of_the_border():
    images = np.full((2, 1, 10, 10), 0.8)  # bright background
    images[0, 0, 2:6, 2:7] = 0.2  # a dark 4x5 object
    stats = image_statistics(images)
    assert stats["object_size"].tolist() == pytest.approx([0.2, 0.0])
    assert stats["object_brightness"][0] == pytest.approx(0.2 * 255)
    assert np.isnan(stats["object_brightness"][1])  # no foreground, no brightness
    assert stats["lighting"][0] == pytest.approx((0.8 * 80 + 0.2 * 20) / 100 * 255)
    with pytest.raises(ValueError, match="Expected images of shape"):
        image_statistics(np.zeros((2, 4, 4)))


def test_bins_follow_wake_vision_and_put_nan_in_no_foreground():
    assert assign_bins(np.array([0.0, 84.9, 85.0, 169.9, 170.0, 255.0]), (85, 170)).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
    ]
    groups, order = slice_groups(np.array([0.05, 0.3, np.nan]), WAKE_VISION["object_size"])
    assert groups == ["far", "mid", NO_FOREGROUND]
    assert order == ("far", "mid", "near", NO_FOREGROUND)
    assert slice_groups(np.array([0.7]), WAKE_VISION["object_size"])[1] == ("far", "mid", "near")


def test_domains_without_their_own_edges_get_wake_vision():
    assert default_slices("imagenet") == {
        "lighting": WAKE_VISION["lighting"],
        "object_size": WAKE_VISION["object_size"],
    }
    assert set(default_slices("fashion_mnist")) == {"lighting", "object_size", "object_brightness"}


def test_statistics_are_cached_per_eval_set(tmp_path):
    pixels = torch.randint(0, 256, (20, 1, 6, 6), dtype=torch.uint8)
    es = TensorEvalSet("toy", [str(i) for i in range(20)], torch.zeros(20, dtype=torch.long),
                       ("a",), "fp1", "toy", pixels=pixels)  # fmt: skip
    cache = ResultCache(tmp_path, "slices")
    first, hit = slice_statistics(es, cache, "pre", batch_size=7)
    assert not hit and first["lighting"].shape == (20,)
    again, hit = slice_statistics(es, cache, "pre")
    assert hit and all(np.array_equal(first[k], again[k], equal_nan=True) for k in first)
    _, hit = slice_statistics(es, cache, "other preprocessing")
    assert not hit
    other = es.subset(range(10))  # another fingerprint
    values, hit = slice_statistics(other, cache, "pre")
    assert not hit and values["lighting"].shape == (10,)
    assert len(list((tmp_path / "slices").iterdir())) == 3
    expected = image_statistics(pixels.numpy() / 255.0)
    assert np.allclose(first["lighting"], expected["lighting"])


@pytest.mark.slow
def test_fashion_mnist_default_edges_leave_every_group_well_filled():
    """The documented edges: Wake Vision's leave Fashion-MNIST groups nearly empty, ours
    put roughly a third of the 10,000 test images in each group."""
    test = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    stats = image_statistics(test.pixels.numpy() / 255.0)
    bright = (stats["lighting"] >= 170).sum()
    assert bright < 50  # Wake Vision's "bright": 14 images
    assert (stats["object_size"] < 0.1).sum() < 50  # ... and "far": 7 images
    for name, bins in DEFAULT_SLICES["fashion_mnist"].items():
        groups, order = slice_groups(stats[bins.measure], bins)
        counts = {g: groups.count(g) for g in order}
        assert NO_FOREGROUND not in counts, name
        assert all(2500 < c < 4500 for c in counts.values()), (name, counts)
