"""The adversarial suite's evaluation on small samples: equality with plain foolbox calls, the
sanity gates on a gradient-masked model, the cache, and the ``[adversarial]`` table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import foolbox as fb
import numpy as np
import pytest
import torch
from torch import nn

from vcheck.cache import ResultCache
from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.errors import VcheckError
from vcheck.evaluate.adversarial import (
    AdversarialProfile,
    ThreatModel,
    evaluate_threat_model,
    parse_profile,
    select_samples,
)
from vcheck.models import resolve_model
from vcheck.profiles import ProfileContext
from vcheck.robustness.attacks import (
    AttackSpec,
    attack_success,
    foolbox_model,
    make_attack,
    restart_seeds,
)

# Tests whose verdict rests on what an attack finds are marked `trains` (CI runs them again
# under the scalar CPU kernels). The others compare two computations on one machine (vcheck
# against the plain foolbox call) or check the cache, which no float path changes.
CTX = ProfileContext(Path("p.toml"), tuple(str(i) for i in range(10)))


@pytest.fixture(scope="module")
def setup():
    model = resolve_model("fmnist_cnn").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    eval_set = data.subset(list(range(200)))
    with torch.no_grad():
        clean = model.module(eval_set.images(range(200))).argmax(1).numpy()
    return model, eval_set, clean


def _profile(norm: str = "linf", **kw) -> AdversarialProfile:
    eps = (0.01, 0.03, 0.1) if norm == "linf" else (0.25, 0.5, 1.0)
    huge = 0.5 if norm == "linf" else 10.0
    tm = ThreatModel(norm, eps, steps=5, huge_epsilon=huge)
    base = {"samples": 40, "noise_repeats": 10, "minimal_norm": False, "examples_per_class": 1}
    return AdversarialProfile(threat_models=(tm,), **{**base, **kw})


class Quantized(nn.Module):
    """Non-differentiable input quantisation in front of a model: gradients are zero, so
    gradient attacks see nothing while the model stays as fragile as before."""

    def __init__(self, net: nn.Module, levels: int = 16) -> None:
        super().__init__()
        self.net, self.levels = net, levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.round(x * (self.levels - 1)) / (self.levels - 1)
        return self.net(q)  # round() passes zero gradients: the graph stays, the signal goes


@pytest.mark.parametrize(
    "spec",
    [
        AttackSpec("fgsm", "linf"),
        AttackSpec("pgd", "linf", steps=5, restarts=2),
        AttackSpec("pgd_margin", "linf", steps=5, target=2),
    ],
    ids=lambda s: f"{s.kind}{s.target or ''}",
)
def test_robust_accuracy_equals_the_plain_foolbox_call_on_the_same_samples_and_seed(setup, spec):
    """Skipping misclassified and already-broken samples changes no result."""
    model, eval_set, clean = setup
    idx = np.asarray(select_samples(eval_set.labels, 40, 0))
    x, y = eval_set.images(idx.tolist()), eval_set.labels[idx]
    correct = clean[idx] == y.numpy()
    eps = [0.01, 0.03, 0.1]
    fmodel = foolbox_model(model.module)
    ours = attack_success(
        fmodel, spec, x, y, eps, seed=3, ids=idx, todo=np.tile(correct, (3, 1)), batch_size=7
    )
    ours |= ~correct
    plain = np.zeros_like(ours)
    attack = make_attack(spec)
    for r in range(spec.restarts):  # one call per restart on every sample, as a user would
        if spec.kind != "fgsm":
            attack.seeds = restart_seeds(3, r, idx)
        _, _, success = attack(fmodel, x, y, epsilons=eps)
        plain |= success.numpy()
    assert 0 < (~ours).sum() < ours.size  # a non-trivial case
    np.testing.assert_array_equal(1 - ours.mean(1), 1 - plain.mean(1))
    if spec.kind == "fgsm":  # and the stock foolbox attack gives the same
        _, _, stock = fb.attacks.FGSM()(fmodel, x, y, epsilons=eps)
        np.testing.assert_array_equal(ours, stock.numpy())


@pytest.mark.trains
def test_the_default_model_passes_the_sanity_gates_and_is_not_robust(setup, tmp_path):
    model, eval_set, clean = setup
    profile = _profile()
    out = evaluate_threat_model(
        model,
        eval_set,
        clean,
        profile.threat_models[0],
        profile,
        seed=0,
        cache=ResultCache(tmp_path, "adversarial"),
    )
    failed = [g.note() for g in out.gates.values() if not g.passed]
    assert failed == []
    acc = [out.robust_accuracy(k, 0.95).value for k in range(4)]
    assert acc[0] == float((out.arrays["clean"] == out.arrays["labels"]).mean())
    assert acc[0] > 0.8 and acc[-1] <= 0.05  # fmnist_cnn is not robust at L-inf 0.1
    # a few examples, each broken at the epsilon shown, with a changed prediction
    a = out.arrays
    assert 1 <= len(a["example_index"]) <= 10
    assert a["example_images"].shape[1:] == (1, 28, 28)
    assert (a["example_pred"] != a["labels"][a["example_index"]]).all()
    shown = a["example_images"].astype(float) / 255
    orig = eval_set.images(a["ids"][a["example_index"]].tolist()).numpy()
    assert (np.abs(shown - orig).max((1, 2, 3)) <= a["example_eps"] + 1 / 255 + 1e-6).all()


@pytest.mark.trains
def test_a_gradient_masked_model_fails_a_sanity_gate_with_the_message(setup, tmp_path):
    model, eval_set, _ = setup
    masked = replace(model, module=Quantized(model.module).eval(), fingerprint="quantized")
    with torch.no_grad():
        clean_q = masked.module(eval_set.images(range(len(eval_set)))).argmax(1).numpy()
    profile = _profile()
    out = evaluate_threat_model(
        masked,
        eval_set,
        clean_q,
        profile.threat_models[0],
        profile,
        seed=0,
        cache=ResultCache(tmp_path, "adversarial"),
    )
    failed = {name: g.note() for name, g in out.gates.items() if not g.passed}
    assert failed, "gradient masking went unnoticed"
    assert set(failed) <= {"near_zero_at_huge_eps", "gradient_free", "stronger_attack"}
    for note in failed.values():
        assert note.startswith("robustness numbers cannot be trusted: ")
    # its robust accuracy looks far better than the unmasked model's: that is the trap
    assert out.robust_accuracy(3, 0.95).value > 0.3


class Constant(nn.Module):
    """Logits that do not depend on the input at all: no graph back to it."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.arange(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


class Detached(nn.Module):
    """A model run without autograd (as a non-torch backend would be): no gradient at all."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)


@pytest.mark.trains
@pytest.mark.parametrize("kind", ["constant", "detached"])
def test_a_model_without_input_gradients_gets_a_gate_verdict_not_a_crash(setup, tmp_path, kind):
    model, eval_set, _ = setup
    module = Constant() if kind == "constant" else Detached(model.module)
    plain = replace(model, module=module.eval(), fingerprint=kind)
    with torch.no_grad():
        clean = plain.module(eval_set.images(range(len(eval_set)))).argmax(1).numpy()
    profile = _profile(minimal_norm=True)
    out = evaluate_threat_model(
        plain,
        eval_set,
        clean,
        profile.threat_models[0],
        profile,
        seed=0,
        cache=ResultCache(tmp_path, "adversarial"),
    )
    acc = [out.robust_accuracy(k, 0.95).value for k in range(4)]
    failed = {name: g.note() for name, g in out.gates.items() if not g.passed}
    assert failed, "a model the gradient attacks cannot see passed every sanity gate"
    for note in failed.values():
        assert note.startswith("robustness numbers cannot be trusted: ")
    if kind == "constant":  # nothing can change its output: as robust as it is accurate
        assert acc == [acc[0]] * 4 and 0 < acc[0] < 0.2
        assert np.isinf(out.arrays["min_l2"][~np.isnan(out.arrays["min_l2"])]).all()
        assert "near_zero_at_huge_eps" in failed
    else:  # the gradient attacks break nothing, noise does: the gates catch the difference
        assert acc[3] > 0.3


def test_a_warm_rerun_attacks_nothing_and_the_key_follows_the_settings(setup, tmp_path):
    model, eval_set, clean = setup
    cache = ResultCache(tmp_path, "adversarial")
    profile = _profile("l2", minimal_norm=True, samples=30)
    tm = profile.threat_models[0]
    first = evaluate_threat_model(model, eval_set, clean, tm, profile, seed=0, cache=cache)
    assert np.isfinite(first.median_l2().value) and first.median_l2().value > 0

    class Refuses(nn.Module):
        def forward(self, x):
            raise AssertionError("a warm run must not attack")

    frozen = replace(model, module=Refuses())
    lines: list[str] = []
    again = evaluate_threat_model(
        frozen, eval_set, clean, tm, profile, seed=0, cache=cache, write=lines.append
    )
    assert again.from_cache and lines == [f"vcheck: adversarial l2 on {eval_set.name}: from cache"]
    for name, value in first.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], value)
    gated = replace(tm, min_robust_accuracy=(None, None, None))
    assert evaluate_threat_model(
        model, eval_set, clean, gated, profile, seed=0, cache=cache
    ).from_cache
    for other_tm, other_seed in ((replace(tm, steps=6), 0), (tm, 1)):
        assert not evaluate_threat_model(
            model, eval_set, clean, other_tm, profile, seed=other_seed, cache=cache
        ).from_cache


def test_the_profile_table_defaults_and_mistakes():
    default = parse_profile({}, CTX)
    assert [t.norm for t in default.threat_models] == ["linf", "l2"]
    assert all(t.threshold(0) is None for t in default.threat_models)
    p = parse_profile({"linf": {"epsilons": [0.1], "min_robust_accuracy": 0.5}}, CTX)
    assert [t.norm for t in p.threat_models] == ["linf"]
    assert p.threat_models[0].threshold(0).value == 0.5
    assert default.threat_models[0].targets == 3
    binary = parse_profile({}, ProfileContext(Path("p.toml"), ("no", "yes")))
    assert [t.targets for t in binary.threat_models] == [1, 1]
    bad = [
        ({"linf": {"epsilons": [0.1, 0.05]}}, "strictly increasing"),
        ({"linf": {"epsilons": [0.1], "min_robust_accuracy": [0.5, 0.4]}}, "one number per"),
        ({"linf": {"epsilons": [0.1], "huge_epsilon": 0.05}}, "huge_epsilon=0.05"),
        ({"linf": {"stepz": 3}}, "stepz"),
        ({"linf": {"targets": 10}}, "at most 9 other classes"),
        ({"linf": {"targets": 0}}, "targets=0"),
        ({"samples": 0}, "samples=0"),
        ({"l2": {"epsilons": [1.0], "min_robust_accuracy": 1.5}}, "can never pass"),
    ]
    for table, needle in bad:
        with pytest.raises(VcheckError) as info:
            parse_profile(table, CTX)
        assert needle in str(info.value) and "p.toml" in str(info.value)
