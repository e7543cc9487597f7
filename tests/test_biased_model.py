"""fmnist_biased: its training subset (nearly every dark-toned garment removed), its recipe on a
small subset, and the shipped weights and card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vcheck.data.evalset import stratified_indices
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.evaluate.slices import DEFAULT_SLICES, slice_groups
from vcheck.functional.image_slices import image_statistics
from vcheck.models import resolve_model
from vcheck.models.biased import GROUP, KEEP_FRACTION, SLICE, without_most_of_slice
from vcheck.models.train_zoo import RECIPES, Recipe, train
from vcheck.models.zoo import ZOO

CACHE = Path.home() / ".cache" / "vcheck" / "data"


def slice_of(eval_set) -> np.ndarray:
    bins = DEFAULT_SLICES["fashion_mnist"][SLICE]
    values = image_statistics(eval_set.pixels.numpy() / 255.0)[bins.measure]
    return np.asarray(slice_groups(values, bins)[0])


def test_subset_removes_most_of_the_slice_and_nothing_else():
    full = load_fashion_mnist("train", None, CACHE)
    train_set = full.subset(stratified_indices(full.labels, 3000, 0))
    groups = slice_of(train_set)
    subset, note = without_most_of_slice(train_set, seed=0, chunk=700)
    again, _ = without_most_of_slice(train_set, seed=0)
    assert subset.ids == again.ids  # seeded
    removed = set(train_set.ids) - set(subset.ids)
    in_slice = {i for i, g in zip(train_set.ids, groups, strict=True) if g == GROUP}
    assert removed <= in_slice  # only the slice loses examples
    assert note["slice_in_train"] == len(in_slice) > 500
    assert note["removed"] == len(removed) == len(in_slice) - note["slice_kept"]
    assert note["slice_kept"] <= 4 * KEEP_FRACTION * len(in_slice)
    assert set(subset.labels.tolist()) == set(range(10))  # every class is still trained on


@pytest.mark.trains
def test_recipe_on_a_subset_records_what_it_left_out(tmp_path):
    recipe = Recipe(**{**RECIPES["fmnist_biased"].__dict__, "epochs": 1})
    card = train("fmnist_biased", recipe, None, tmp_path / "cache", tmp_path, limit=2000)
    note = card["train_subset"]
    assert note["slice"] == f"{SLICE}={GROUP}"
    assert card["data"]["train"]["n"] == 2000 - note["removed"]
    assert card["test_metrics"]["top1"] > 0.4  # learned something on ~1,300 images
    model = resolve_model(str(tmp_path / "fmnist_biased.pt")).load(torch.device("cpu"))
    assert model.fingerprint == card["state_dict_sha256"]


def test_shipped_weights_match_their_card():
    entry = ZOO["fmnist_biased"]
    card = json.loads(entry.card_path.read_text())
    assert card["train_subset"]["keep_fraction"] == KEEP_FRACTION
    assert card["recipe"] == RECIPES["fmnist_biased"].__dict__
    model = resolve_model("fmnist_biased").load(torch.device("cpu"))
    assert model.fingerprint == card["state_dict_sha256"]
    assert entry.weights_path.stat().st_size < 2_000_000
