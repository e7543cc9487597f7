"""The zoo training command: deterministic bytes, a truthful card, loadable output.

Trained here on a 2,000-image subset for one epoch (seconds), not the full recipe.
"""

import json

import pytest
import torch

from vcheck.models import resolve_model
from vcheck.models.base import file_sha256, state_dict_fingerprint
from vcheck.models.train_zoo import RECIPES, Recipe, main, train


def _quick(tmp_path, out_name):
    recipe = Recipe(**{**RECIPES["fmnist_mlp"].__dict__, "epochs": 1})
    return train("fmnist_mlp", recipe, None, tmp_path / "cache", tmp_path / out_name, limit=2000)


@pytest.mark.trains
def test_training_is_deterministic_and_card_is_truthful(tmp_path):
    first = _quick(tmp_path, "a")
    second = _quick(tmp_path, "b")
    assert first["weights_sha256"] == second["weights_sha256"]
    weights = tmp_path / "a" / "fmnist_mlp.pt"
    assert file_sha256(weights) == first["weights_sha256"]
    card = json.loads((tmp_path / "a" / "fmnist_mlp.json").read_text())
    assert card == first
    assert card["recipe"]["epochs"] == 1 and card["limit"] == 2000
    assert card["data"]["train"]["n"] == 2000
    # Learned something: far above the 10% of chance on held-out test images.
    assert card["test_metrics"]["top1"] > 0.5

    model = resolve_model(str(weights)).load(torch.device("cpu"))
    assert model.fingerprint == card["state_dict_sha256"]
    assert state_dict_fingerprint(model.module.net) == card["state_dict_sha256"]


def test_command_line_writes_weights_and_card(tmp_path, capsys):
    code = main(
        [
            "--models",
            "fmnist_mlp",
            "--epochs",
            "1",
            "--limit",
            "500",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert (tmp_path / "out" / "fmnist_mlp.pt").is_file()
    assert (tmp_path / "out" / "fmnist_mlp.json").is_file()
    assert "wrote" in capsys.readouterr().out
