"""``--model=timm:NAME``: built offline, weights from the hub cache or --weights, timm's
preprocessing (skipped without timm, an optional extra)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vcheck.errors import CorruptArtefactError, MissingArtefactError, UnknownNameError
from vcheck.models import resolve_model

timm = pytest.importorskip("timm")
NAME = "test_resnet.r160_in1k"  # a tiny timm model with an ImageNet-1k pretrained config


def fill_hub_cache(cache: Path, name: str = NAME) -> Path:
    """What timm.create_model(name, pretrained=True) leaves in the hub cache (random weights)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False)
    repo = cache / f"models--{net.pretrained_cfg['hf_hub_id'].replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file(net.state_dict(), snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_weights_from_the_hub_cache_and_timms_preprocessing(hub_cache):
    path = fill_hub_cache(hub_cache)
    ref = resolve_model(f"timm:{NAME}")
    assert (ref.kind, ref.weights) == ("timm", path)
    data = timm.data.resolve_data_config({}, model=timm.create_model(NAME))
    assert ref.cfg.input_size == tuple(data["input_size"])
    assert ref.cfg.resize == math.floor(data["input_size"][-1] / data["crop_pct"])
    assert (ref.cfg.mean, ref.cfg.std) == (tuple(data["mean"]), tuple(data["std"]))
    assert ref.cfg.interpolation == data["interpolation"]
    assert ref.cfg.domain == "imagenet" and ref.cfg.classes[0] == "tench"
    assert ref.profile.name == "imagenet.toml"  # no published metrics: the generic floors

    model = ref.load(torch.device("cpu"))
    from safetensors.torch import load_file

    twin = timm.create_model(NAME)
    twin.load_state_dict(load_file(path))
    x = torch.rand(2, *ref.cfg.input_size)
    mean = torch.tensor(data["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.module(x), twin.eval()((x - mean) / std))


def test_missing_weights_name_the_hub_cache_and_the_fix(hub_cache):
    with pytest.raises(MissingArtefactError, match=r"timm/test_resnet\.r160_in1k .*hub cache"):
        resolve_model(f"timm:{NAME}")


def test_weights_from_a_local_file(hub_cache, tmp_path):
    path = fill_hub_cache(tmp_path / "elsewhere")
    assert resolve_model(f"timm:{NAME}", weights=path).weights == path


def test_a_typo_suggests_timm_names():
    with pytest.raises(UnknownNameError, match=r"Unknown timm model 'test_resnt'.*'test_resnet'"):
        resolve_model("timm:test_resnt")


def test_a_checkpoint_of_another_architecture_is_one_line(hub_cache, tmp_path):
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_vit").state_dict(), other)
    ref = resolve_model(f"timm:{NAME}", weights=other)
    with pytest.raises(CorruptArtefactError) as info:
        ref.load(torch.device("cpu"))
    message = str(info.value)
    assert "do not fit architecture 'test_resnet.r160_in1k'" in message
    assert " missing (e.g. " in message and " unexpected (e.g. " in message
    assert "\n" not in message
