"""The multi-label zoo recipe: BCE on fresh multi-object composites, deterministic, and it
learns (tested on 1,000 training images for one epoch, not the full recipe)."""

from __future__ import annotations

import json

import pytest
import torch

from vcheck.models import resolve_model
from vcheck.models.train_zoo import RECIPES, Recipe, multilabel_composites, train
from vcheck.models.zoo import ZOO

pytestmark = pytest.mark.trains


def _quick(tmp_path, out_name):
    recipe = Recipe(**{**RECIPES["fmnist_multilabel"].__dict__, "epochs": 1})
    cache = tmp_path / "cache"
    return train("fmnist_multilabel", recipe, None, cache, tmp_path / out_name, limit=1000)


def test_training_is_deterministic_learns_and_loads_as_a_sigmoid_model(tmp_path):
    first = _quick(tmp_path, "a")
    second = _quick(tmp_path, "b")
    assert first["weights_sha256"] == second["weights_sha256"]
    card = json.loads((tmp_path / "a" / "fmnist_multilabel.json").read_text())
    assert card == first and card["data"]["train"]["n"] == 1000
    metrics = card["test_metrics"]
    assert set(metrics) == {"top1", "multi_object_map", "multi_object_subset_accuracy"}
    # About 1.6 of 10 classes per composite: chance mAP is near 0.17; one short epoch on
    # 1,000 images must already rank present items above absent ones.
    assert metrics["multi_object_map"] > 0.3
    model = resolve_model(str(tmp_path / "a" / "fmnist_multilabel.pt")).load(torch.device("cpu"))
    assert model.cfg.output_kind == "sigmoid"
    assert model.fingerprint == card["state_dict_sha256"]


def test_composites_change_every_epoch_and_hold_multi_hot_targets(tmp_path):
    from vcheck.data.fashion_mnist import load_fashion_mnist

    train_set = load_fashion_mnist("train", None, tmp_path / "cache").subset(range(300))
    recipe = RECIPES["fmnist_multilabel"]
    pixels, targets = multilabel_composites(train_set, recipe, 0)
    again, same_targets = multilabel_composites(train_set, recipe, 0)
    other, _ = multilabel_composites(train_set, recipe, 1)
    assert torch.equal(pixels, again) and torch.equal(targets, same_targets)
    assert not torch.equal(pixels, other)
    assert pixels.shape == (300, 1, 28, 28) and targets.shape == (300, 10)
    assert set(targets.sum(1).tolist()) <= {1.0, 2.0, 3.0} and targets.sum(1).mean() > 1.2
    assert ZOO["fmnist_multilabel"].cfg.output_kind == "sigmoid"
