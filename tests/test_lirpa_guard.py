"""auto_LiRPA 0.3 clamps Sigmoid/Tanh input intervals to +-500 before drawing its linear
bounds, which is unsound past that range; vcheck's adapters refuse such CROWN bounds. The
shipped sigmoid network is where vcheck's own benchmark found the bug."""

from pathlib import Path

import pytest
import torch
from torch import nn

from vcheck.soundness.attacks import margin
from vcheck.soundness.runner import load_benchmarks
from vcheck.verify import bounds
from vcheck.verify.bounds import UnsupportedNetworkError, margin_lower_bounds
from vcheck.verify.lirpa import LirpaVerifier

SHIPPED = Path(__file__).resolve().parents[1] / "fixtures" / "soundness"


def steep_sigmoid(gain: float) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        net[0].weight.mul_(gain)
    return net


@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN"])
def test_crown_bounds_past_the_relaxation_range_are_refused_in_one_line(method):
    box = torch.zeros(1, 3) - 0.1, torch.zeros(1, 3) + 0.1
    margin_lower_bounds(steep_sigmoid(1.0), *box, 0, method)  # well inside: fine
    with pytest.raises(UnsupportedNetworkError, match=r"reaches .* past auto_LiRPA 0.3's"):
        margin_lower_bounds(steep_sigmoid(1e5), *box, 0, method)
    margin_lower_bounds(steep_sigmoid(1e5), *box, 0, "IBP")  # IBP maps the ends: sound


def test_unguarded_alpha_crown_proves_a_planted_counterexample_of_the_sigmoid_network(
    monkeypatch,
):
    (bench,) = [b for b in load_benchmarks(SHIPPED) if b.name == "cnn_sigmoid_1x5x5_eps0.02"]
    inst = next(i for i in bench.network.instances if i.id == "cex_03")
    x_star = torch.from_numpy(inst.x_star)[None]
    with torch.no_grad():
        assert float(margin(bench.network.net, x_star, torch.tensor([inst.label]))) < 0
    guarded = LirpaVerifier("alpha-CROWN").verify(bench.network, inst)
    assert guarded.verdict == "error" and "relaxation range" in guarded.reason
    monkeypatch.setattr(bounds, "_check_smooth_relaxations", lambda module, method: None)
    raw = LirpaVerifier("alpha-CROWN").verify(bench.network, inst)
    assert raw.verdict == "unsat"  # auto_LiRPA's own answer: wrong, x* is a counterexample


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()))
def test_the_guard_before_alpha_crown_gives_the_verdicts_of_the_guard_after_it(name, monkeypatch):
    """The range guard runs on CROWN's bounds before alpha-CROWN optimises (seconds saved per
    refused box); on every shipped network the verdicts equal those of the guard run only
    after the optimisation. ReLU networks have no Sigmoid/Tanh node: their path is unchanged."""
    (bench,) = [b for b in load_benchmarks(SHIPPED) if b.name == name]
    module = bounds._bounded_module(bench.network.net, (1, *bench.network.input_shape))
    if not bounds._smooth_nodes(module):
        return
    sample = [
        next(i for i in bench.network.instances if i.kind == k) for k in ("clean", "counterexample")
    ]
    early = [LirpaVerifier("alpha-CROWN").verify(bench.network, i) for i in sample]
    monkeypatch.setattr(bounds, "_precheck_smooth_relaxations", lambda *args: None)
    late = [LirpaVerifier("alpha-CROWN").verify(bench.network, i) for i in sample]
    assert [(r.verdict, r.refused) for r in early] == [(r.verdict, r.refused) for r in late]
    assert all(r.refused and "relaxation range" in r.reason for r in early)
