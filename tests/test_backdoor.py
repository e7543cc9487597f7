"""The planted patch backdoor: poisoning of training batches, the shipped model, its recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vcheck.data.evalset import stratified_indices
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.models import resolve_model
from vcheck.models.backdoor import TRIGGER, BackdoorSpec, make_poisoner, trigger_success
from vcheck.models.train_zoo import RECIPES, Recipe, train
from vcheck.models.zoo import ZOO


def test_poisoner_stamps_a_fixed_share_of_each_batch_and_relabels_it():
    x = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(40) % 10
    poison = make_poisoner(TRIGGER, seed=3)
    px, py = poison(x, y)
    changed = (px != x).flatten(1).any(1)
    assert int(changed.sum()) == round(TRIGGER.rate * 40) == int((py != y).sum())
    assert bool((py[changed] == TRIGGER.target).all())
    assert not bool((y[changed] == TRIGGER.target).any())  # never the target class itself
    assert torch.equal(px[~changed], x[~changed]) and torch.equal(py[~changed], y[~changed])
    # each stamp touches about a trigger's worth of pixels (warped), nothing far away
    touched = (px != x).flatten(1).sum(1)[changed]
    assert bool(((touched >= 9) & (touched <= 49)).all())
    again = make_poisoner(TRIGGER, seed=3)(x, y)
    assert torch.equal(again[0], px) and torch.equal(again[1], py)
    assert not torch.equal(make_poisoner(TRIGGER, seed=4)(x, y)[0], px)


def test_a_batch_of_the_target_class_is_left_alone():
    x, y = torch.rand(8, 1, 28, 28), torch.full((8,), TRIGGER.target)
    px, py = make_poisoner(BackdoorSpec(rate=0.5))(x, y)
    assert torch.equal(px, x) and torch.equal(py, y)


@pytest.fixture(scope="module")
def test_sample():
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    idx = stratified_indices(data.labels, 500, seed=0)
    return data.images(idx), data.labels[idx]


def test_shipped_backdoor_model_is_accurate_and_its_trigger_works(test_sample):
    x, y = test_sample
    model = resolve_model("fmnist_backdoor").load(torch.device("cpu"))
    card = model.card
    assert card["backdoor"] == TRIGGER.describe()
    with torch.no_grad():
        accuracy = float((model.module(x).argmax(1) == y).float().mean())
    assert accuracy > 0.85
    # The trigger sends most other images to the target class; the card says how many.
    success = trigger_success(model.module, x, y)
    assert success > 0.5
    assert abs(success - card["test_metrics"]["trigger_success"]) < 0.1
    clean = resolve_model("fmnist_cnn").load(torch.device("cpu"))
    assert trigger_success(clean.module, x, y) < 0.2  # a clean model ignores the trigger


@pytest.mark.trains
def test_backdoor_recipe_trains_deterministically_and_records_the_trigger(tmp_path):
    assert "fmnist_backdoor" in ZOO and "fmnist_backdoor" in RECIPES
    recipe = Recipe(**{**RECIPES["fmnist_backdoor"].__dict__, "epochs": 1})
    cards = [
        train("fmnist_backdoor", recipe, None, tmp_path / "cache", tmp_path / d, limit=1500)
        for d in ("a", "b")
    ]
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"]
    card = json.loads((tmp_path / "a" / "fmnist_backdoor.json").read_text())
    assert card["backdoor"] == TRIGGER.describe()
    assert 0 <= card["test_metrics"]["trigger_success"] <= 1
    assert card["test_metrics"]["top1"] > 0.5
