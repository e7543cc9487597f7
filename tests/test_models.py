"""vcheck.models: name resolution, weight files, checkpoints, factories and the bundled zoo."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from vcheck.errors import (
    CorruptArtefactError,
    InvalidArgument,
    MissingArtefactError,
    UnknownNameError,
    VcheckError,
)
from vcheck.models import ZOO, list_models, resolve_model
from vcheck.models.base import file_sha256, state_dict_fingerprint

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet18_net():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None)


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory, resnet18_net):
    path = tmp_path_factory.mktemp("weights") / "resnet18-random.pth"
    torch.save(resnet18_net.state_dict(), path)
    return path


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


# -- names -----------------------------------------------------------------------------


def test_list_models_with_pattern_includes_names_and_aliases():
    names = list_models("convnext*")
    assert {"convnext_tiny", "convnext_t", "convnext_base"} <= set(names)
    assert all(n.startswith("convnext") for n in names)
    assert names == sorted(names)
    assert {"fmnist_cnn", "fmnist_mlp", "resnet18", "rn18"} <= set(list_models())


def test_unknown_model_suggests_close_name():
    with pytest.raises(UnknownNameError) as info:
        resolve_model("resnt18")
    assert "Did you mean 'resnet18'" in str(info.value)
    assert "resnet18" in info.value.suggestions


def test_empty_model_name():
    with pytest.raises(InvalidArgument, match="--model is empty"):
        resolve_model("")


def test_alias_resolves_to_torchvision_arch(empty_torch_home, resnet18_weights):
    ref = resolve_model("rn18", weights=resnet18_weights)
    assert (ref.kind, ref.arch, ref.name) == ("torchvision", "resnet18", "rn18")
    assert ref.cfg.domain == "imagenet" and ref.cfg.num_classes == 1000
    assert ref.cfg.input_size == (3, 224, 224)


# -- torchvision weights ---------------------------------------------------------------


def test_missing_hub_weights_name_the_expected_file(empty_torch_home):
    with pytest.raises(MissingArtefactError) as info:
        resolve_model("convnext_t")
    message = str(info.value)
    expected = empty_torch_home / "hub" / "checkpoints" / "convnext_tiny-983f1562.pth"
    assert str(expected) in message
    assert "--weights" in message
    assert "\n" not in message


def test_weights_option_must_be_a_file(tmp_path):
    with pytest.raises(InvalidArgument, match="--weights="):
        resolve_model("resnet18", weights=tmp_path / "missing.pth")


def test_weights_override_loads_and_fingerprints(empty_torch_home, resnet18_weights, resnet18_net):
    model = resolve_model("resnet18", weights=resnet18_weights).load(CPU)
    assert model.fingerprint == state_dict_fingerprint(resnet18_net)
    assert model.source == str(resnet18_weights)
    assert not model.module.training
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model.module(x), resnet18_net.eval()(_imagenet_norm(x)))


def _imagenet_norm(x):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_hub_file_with_wrong_hash_prefix_is_corrupt(empty_torch_home):
    hub = empty_torch_home / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "resnet18-f37072fd.pth").write_bytes(b"half a download")
    ref = resolve_model("resnet18")
    assert ref.weights == hub / "resnet18-f37072fd.pth"
    with pytest.raises(CorruptArtefactError, match="sha256 prefix 'f37072fd'"):
        ref.load(CPU)


def test_wrong_shapes_name_the_mismatched_key(tmp_path):
    path = tmp_path / "ten-classes.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), path)
    with pytest.raises(CorruptArtefactError) as info:
        resolve_model("resnet18", weights=path).load(CPU)
    message = str(info.value)
    assert "fc.weight" in message and "(10, 512) vs (1000, 512)" in message
    assert "resnet18" in message


def test_missing_and_unexpected_keys_are_reported(tmp_path):
    path = tmp_path / "mlp.pt"
    state = ZOO["fmnist_mlp"].build().state_dict()
    state["extra.weight"] = state.pop("1.weight")
    torch.save(state, path)
    with pytest.raises(CorruptArtefactError, match=r"1 missing \(e\.g\. 1\.weight\).*1 unexpected"):
        resolve_model("fmnist_mlp", weights=path).load(CPU)


def test_truncated_checkpoint_is_corrupt_not_a_torch_traceback(tmp_path, resnet18_weights):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(resnet18_weights.read_bytes()[:100_000])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint at all" * 10)
    for path, reason in (
        (truncated, "it is a damaged or truncated torch zip archive"),
        (garbage, "it is not a file written by torch.save (it starts with b'\\x00not a chec"),
    ):
        with pytest.raises(CorruptArtefactError) as info:
            resolve_model("resnet18", weights=path).load(CPU)
        assert str(path) in str(info.value) and reason in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"hello weights\n", "it starts with b'hello weight'"),  # torch says only "101"
        (b'{"a": 1}', "it is not a file written by torch.save"),
    ],
)
def test_foreign_weight_files_get_a_reason_a_user_can_act_on(tmp_path, content, reason):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(CorruptArtefactError) as info:
        resolve_model("fmnist_mlp", weights=path).load(CPU)
    assert reason in str(info.value) and "101" not in str(info.value)


def test_a_pickled_module_is_refused_without_advice_to_unpickle_it(tmp_path):
    path = tmp_path / "module.pt"
    torch.save({"net": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(CorruptArtefactError) as info:
        resolve_model("fmnist_mlp", weights=path).load(CPU)
    message = str(info.value)
    assert "pickled Python object (torch.nn.modules.linear.Linear)" in message
    assert "weights_only` set to `False`" not in message and "\n" not in message


@pytest.mark.parametrize("model", ["fixtures/models/fmnist_cnn.pt", "vcheck.models.zoo:fmnist_mlp"])
def test_weights_that_cannot_apply_to_the_model_are_refused(model):
    mlp = Path(__file__).resolve().parents[1] / "fixtures" / "models" / "fmnist_mlp.pt"
    with pytest.raises(InvalidArgument, match=r"--weights=.* cannot apply to --model="):
        resolve_model(model, weights=mlp)


def test_data_parallel_prefix_is_stripped(tmp_path):
    torch.manual_seed(1)
    net = ZOO["fmnist_mlp"].build()
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    model = resolve_model("fmnist_mlp", weights=path).load(CPU)
    assert model.fingerprint == state_dict_fingerprint(net)


def test_wrapped_state_dict_loads(tmp_path):
    torch.manual_seed(2)
    net = ZOO["fmnist_mlp"].build()
    path = tmp_path / "wrapped.pt"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, path)
    assert resolve_model("fmnist_mlp", weights=path).load(CPU).fingerprint == (
        state_dict_fingerprint(net)
    )


# -- checkpoint paths ------------------------------------------------------------------


def test_checkpoint_with_arch_resolves_from_its_path(tmp_path):
    torch.manual_seed(3)
    net = ZOO["fmnist_mlp"].build()
    path = tmp_path / "run" / "mlp-best.pt"
    path.parent.mkdir()
    torch.save({"arch": "fmnist_mlp", "state_dict": net.state_dict()}, path)
    ref = resolve_model(str(path))
    assert (ref.kind, ref.arch, ref.weights) == ("checkpoint", "fmnist_mlp", path)
    assert ref.cfg == ZOO["fmnist_mlp"].cfg
    model = ref.load(CPU)
    assert model.fingerprint == state_dict_fingerprint(net)
    assert model.card is None  # a user checkpoint has no bundled card
    x = torch.rand(3, 1, 28, 28)
    mean, std = ref.cfg.mean[0], ref.cfg.std[0]
    torch.testing.assert_close(model.module(x), net.eval()((x - mean) / std))


def test_checkpoint_with_torchvision_arch(tmp_path, resnet18_net, empty_torch_home):
    path = tmp_path / "r18.pt"
    torch.save({"arch": "rn18", "state_dict": resnet18_net.state_dict()}, path)
    ref = resolve_model(str(path))
    assert (ref.kind, ref.arch) == ("checkpoint", "resnet18")
    assert ref.load(CPU).fingerprint == state_dict_fingerprint(resnet18_net)


def test_bare_state_dict_as_model_name_says_how_to_pass_it(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(ZOO["fmnist_mlp"].build().state_dict(), path)
    with pytest.raises(CorruptArtefactError) as info:
        resolve_model(str(path))
    assert "no 'arch' entry" in str(info.value)
    assert "--model=ARCH --weights=" in str(info.value)


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(MissingArtefactError, match="checkpoint not found"):
        resolve_model(str(tmp_path / "nope.pt"))


def test_garbage_checkpoint_path_is_corrupt(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(CorruptArtefactError, match="cannot read weights file"):
        resolve_model(str(path))


# -- factories -------------------------------------------------------------------------

FACTORY_MODULE = """
from torch import nn
from vcheck.models import ModelCfg

CFG = ModelCfg(domain="toy", classes=("a", "b", "c"), input_size=(1, 2, 2))


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), CFG


def make_with_attribute():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    net.vcheck_cfg = CFG
    return net


def make_without_cfg():
    return nn.Linear(4, 3)


def make_number():
    return 42


def make_broken():
    raise RuntimeError("weights server unreachable")
"""


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    name = "vcheck_test_factories"
    (tmp_path / "pkg_factories").mkdir()
    (tmp_path / "pkg_factories" / "__init__.py").write_text("")
    (tmp_path / "pkg_factories" / f"{name}.py").write_text(textwrap.dedent(FACTORY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "pkg_factories", raising=False)
    return f"pkg_factories.{name}"


@pytest.mark.parametrize("factory", ["make", "make_with_attribute"])
def test_factory_returning_module_and_cfg(factory_module, factory):
    ref = resolve_model(f"{factory_module}:{factory}")
    assert ref.kind == "factory" and ref.weights is None
    assert ref.cfg.classes == ("a", "b", "c")
    model = ref.load(CPU)
    assert not model.module.training
    assert model.module(torch.rand(5, 1, 2, 2)).shape == (5, 3)
    assert model.source == f"factory:{factory_module}:{factory}"
    assert len(model.fingerprint) == 64


@pytest.mark.parametrize(
    ("factory", "got"), [("make_number", "int"), ("make_without_cfg", "Linear")]
)
def test_factory_returning_something_else(factory_module, factory, got):
    with pytest.raises(InvalidArgument, match=f"must return .*got {got}"):
        resolve_model(f"{factory_module}:{factory}")


@pytest.mark.parametrize("spec", ["no_such_module_xyz:make", "{mod}:no_such_factory"])
def test_factory_that_cannot_be_imported(factory_module, spec):
    with pytest.raises(InvalidArgument, match="cannot import"):
        resolve_model(spec.format(mod=factory_module))


def test_factory_that_raises_is_a_usage_error_naming_the_cause(factory_module):
    with pytest.raises(InvalidArgument, match="factory raised RuntimeError: weights server"):
        resolve_model(f"{factory_module}:make_broken")


def test_a_file_named_like_a_registered_model_does_not_shadow_it(
    tmp_path, monkeypatch, empty_torch_home
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").write_bytes(b"not a checkpoint")
    with pytest.raises(MissingArtefactError, match=r"resnet18-f37072fd\.pth"):
        resolve_model("resnet18")


# -- bundled zoo -----------------------------------------------------------------------


def test_bundled_fmnist_cnn_loads_in_eval_mode_with_its_card():
    entry = ZOO["fmnist_cnn"]
    model = resolve_model("fmnist_cnn").load(CPU)
    assert model.domain == "fashion_mnist" and len(model.classes) == 10
    assert not any(m.training for m in model.module.modules())
    assert not any(p.requires_grad for p in model.module.parameters())
    logits = model.module(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    card = json.loads(entry.card_path.read_text())
    assert model.card == card
    assert card["weights_sha256"] == file_sha256(entry.weights_path)
    assert card["state_dict_sha256"] == model.fingerprint
    assert model.default_profile == entry.profile_path


@pytest.fixture
def fixtures_copy(tmp_path, monkeypatch):
    copy = tmp_path / "fixtures"
    (copy / "models").mkdir(parents=True)
    for suffix in (".pt", ".json"):
        shutil.copy(ZOO["fmnist_cnn"].weights_path.with_suffix(suffix), copy / "models")
    monkeypatch.setenv("VCHECK_FIXTURES", str(copy))
    return copy


def test_tampered_zoo_weights_are_detected(fixtures_copy):
    weights = fixtures_copy / "models" / "fmnist_cnn.pt"
    assert ZOO["fmnist_cnn"].weights_path == weights
    resolve_model("fmnist_cnn").load(CPU)  # the untouched copy loads
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit inside a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(VcheckError, match="does not match the sha256 in its model card"):
        resolve_model("fmnist_cnn").load(CPU)


def test_missing_zoo_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("VCHECK_FIXTURES", str(tmp_path / "empty"))
    with pytest.raises(MissingArtefactError) as info:
        resolve_model("fmnist_mlp")
    message = str(info.value)
    assert str(tmp_path / "empty" / "models" / "fmnist_mlp.pt") in message
    assert "make zoo" in message and "--weights" in message


def test_zoo_model_with_weights_override_skips_the_card(tmp_path, fixtures_copy):
    torch.manual_seed(4)
    net = ZOO["fmnist_cnn"].build()
    path = tmp_path / "mine.pt"
    torch.save(net.state_dict(), path)
    model = resolve_model("fmnist_cnn", weights=path).load(CPU)
    assert model.fingerprint == state_dict_fingerprint(net)
    assert model.card is None


def test_fingerprint_depends_on_values_not_on_the_object(tmp_path):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 2))
    before = state_dict_fingerprint(net)
    twin = nn.Sequential(nn.Linear(3, 2))
    assert state_dict_fingerprint(twin) != before
    twin.load_state_dict(net.state_dict())
    assert state_dict_fingerprint(twin) == before
    with torch.no_grad():
        net[0].bias[0] += 1e-6
    assert state_dict_fingerprint(net) != before
    assert state_dict_fingerprint(twin.double()) != before  # dtype is part of it
