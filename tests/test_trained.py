"""SoundnessBench's trained generator on a tiny configuration: its pieces do what the
recipe says, a run is deterministic and recorded, and only genuine hidden x* are kept."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from vcheck.errors import InvalidArgument
from vcheck.soundness import trained
from vcheck.soundness.attacks import AttackOutcome, HidingSettings, margin, pgd_deltas
from vcheck.soundness.trained import TrainedSettings, generate, triangular

SMALL = HidingSettings(
    restarts=3, series=((0.25, 0), (0.25, 20)), apgd_steps=20, vertices=50, points=50
)
TINY = TrainedSettings(
    name="tiny",
    hidden=(32, 32),
    epochs=40,
    pgd_steps=5,
    pgd_restarts=3,
    window=8,
    check_every=20,
    lr=5e-3,
    hiding=SMALL,
)


@pytest.fixture(scope="module")
def tiny():
    return generate(TINY)


def test_learning_rate_rises_over_the_warmup_then_falls_to_zero():
    s = TrainedSettings(epochs=100, warmup=0.4)
    assert triangular(0, s) == 0
    assert triangular(20, s) == pytest.approx(0.5)
    assert triangular(40, s) == pytest.approx(1.0)
    assert triangular(70, s) == pytest.approx(0.5)
    assert triangular(100, s) == 0


def test_pgd_keeps_the_strongest_delta_which_for_a_linear_model_is_a_vertex():
    net = nn.Linear(4, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0], [-1.0, 1.0, 2.0, 0.0]]))
        net.bias.zero_()
    x, y = torch.zeros(1, 4), torch.tensor([0])
    delta = pgd_deltas(
        net, x, y, 0.1, steps=20, restarts=2, rel_step=0.25, gen=torch.Generator().manual_seed(0)
    )
    # f_1 - f_0 = (w1 - w0) . delta is largest at 0.1 * sign(w1 - w0)
    torch.testing.assert_close(delta, 0.1 * torch.tensor([[-1.0, 1.0, 1.0, -1.0]]))


@pytest.mark.trains
def test_a_tiny_run_is_deterministic_and_records_what_it_did(tiny):
    again = generate(TINY)
    for a, b in zip(tiny.net.state_dict().values(), again.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [i.to_json() for i in tiny.instances] == [i.to_json() for i in again.instances]
    s = tiny.settings
    assert s["epochs"] == 40 and s["pgd_steps"] == 5 and s["window"] == 8
    assert [c[0] for c in s["checks"]] == [20, 40]  # [epoch, weak-check passes, hidden]
    assert s["epochs_run"] == 40 and s["best_epoch"] in (20, 40)
    assert s["dropped_counterexamples"] == 10 - sum(
        i.kind == "counterexample" for i in tiny.instances
    )
    assert all(i.generator.startswith("trained") for i in tiny.instances)


@pytest.mark.trains
def test_clean_ground_truth_comes_from_an_attack_witness_or_stays_unknown(tiny):
    clean = [i for i in tiny.instances if i.kind == "clean"]
    assert len(clean) == 10
    for inst in clean:
        if inst.found_by:
            assert inst.ground_truth == "sat" and inst.ground_truth_method.startswith("attack")
        else:
            assert inst.ground_truth in ("unsat", "unknown")


@pytest.mark.trains
def test_only_genuine_counterexamples_are_kept(monkeypatch):
    """With every attack blinded, exactly the triples with x0 right and x* wrong survive."""

    def blind(net, lower, upper, label, settings, seed):
        n = len(label)
        return {"blind": AttackOutcome(torch.zeros(n, dtype=torch.bool), torch.zeros_like(lower))}

    monkeypatch.setattr(trained, "hiding_check", blind)
    net = generate(dataclasses.replace(TINY, epochs=200, lr=1e-2, check_every=100))
    kept = [i for i in net.instances if i.kind == "counterexample"]
    assert 0 < len(kept) < 10  # the hinge term misclassifies some x*, not all, this soon
    for inst in kept:
        x_star = torch.from_numpy(inst.x_star)[None]
        center = torch.from_numpy(inst.center)[None]
        y = torch.tensor([inst.label])
        assert float(margin(net.net, x_star, y)) <= 0 < float(margin(net.net, center, y))
        np.testing.assert_allclose(np.abs(inst.x_star - inst.center), inst.eps, rtol=1e-5)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(InvalidArgument, match="epochs, window must be at least 1"):
        TrainedSettings(epochs=0, window=0)
    with pytest.raises(InvalidArgument, match="activation='elu'"):
        TrainedSettings(activation="elu")
    with pytest.raises(InvalidArgument, match="input_shape"):
        TrainedSettings(input_shape=(1, 5, 5))
