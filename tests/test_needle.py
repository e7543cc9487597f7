"""The constructive needle generator: planted counterexamples are genuine, hidden from the
attacks, and invisible from a box shrunk to 98% of eps; clean instances are proved robust."""

import numpy as np
import pytest
import torch

from vcheck.errors import InvalidArgument
from vcheck.soundness.attacks import HidingSettings, margin, pgd
from vcheck.soundness.intervals import interval_bounds, margin_lower_bound
from vcheck.soundness.needle import Needle, NeedleSettings, build_host, fold, generate

SMALL = HidingSettings(
    restarts=5,
    series=((0.25, 0), (0.25, 100), (0.02, 100)),
    apgd_steps=100,
    vertices=200,
    points=500,
)
CASES = {
    "mlp": NeedleSettings(name="mlp", hiding=SMALL),
    "cnn": NeedleSettings(
        name="cnn", input_shape=(1, 5, 5), convs=(8,), hidden=(64, 32), hiding=SMALL
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(CASES))
def bench(request):
    return generate(CASES[request.param])


def boxes(instances):
    lower = torch.from_numpy(np.stack([i.lower for i in instances]))
    upper = torch.from_numpy(np.stack([i.upper for i in instances]))
    labels = torch.tensor([i.label for i in instances])
    return lower, upper, labels


def test_every_planted_counterexample_is_genuine_in_float32_and_float64(bench):
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    assert len(cex) == 10
    for inst in cex:
        assert inst.ground_truth == "sat" and inst.target == 1 - inst.label
        assert (inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()
        x = torch.from_numpy(inst.x_star)[None]
        y = torch.tensor([inst.label])
        assert float(margin(bench.net, x, y)) == pytest.approx(-0.05, abs=1e-3)
        assert float(margin(bench.net.double(), x.double(), y)) < -0.04
        bench.net.float()


def test_counterexamples_are_hidden_from_every_recorded_attack(bench):
    for inst in bench.instances:
        if inst.kind == "counterexample":
            assert inst.found_by == () and len(inst.hidden_from) == 6
    # An independent, stronger PGD run than the generator's recorded one still finds nothing.
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    lower, upper, labels = boxes(cex)
    out = pgd(bench.net, lower, upper, labels, rel_step=0.01, steps=300, restarts=10, seed=99)
    assert not out.found.any()


def test_clean_instances_have_interval_proofs(bench):
    clean = [i for i in bench.instances if i.kind == "clean"]
    assert len(clean) == 10
    assert all(i.ground_truth == "unsat" for i in clean)
    lower, upper, labels = boxes(clean)
    assert (margin_lower_bound(bench.net, lower, upper, labels) > 0).all()


def test_a_box_shrunk_to_98_percent_hides_the_bump_from_a_sound_bound(bench):
    """Why the box-shrinking mutant is catchable: the shrunk box is certified robust."""
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    lower, upper, labels = boxes(cex)
    center = (lower + upper) / 2
    full = margin_lower_bound(bench.net, lower, upper, labels)
    shrunk = margin_lower_bound(
        bench.net, center - 0.98 * (center - lower), center + 0.98 * (upper - center), labels
    )
    assert (full < 0).all()  # a sound method cannot certify: x* is inside
    assert (shrunk > 0).all()  # ...but it would on 98% of the box


def test_fold_equals_host_away_from_the_needles_and_adds_k_at_x_star():
    s = CASES["mlp"]
    torch.manual_seed(0)
    host = build_host(s).eval()
    x_star = torch.full((10,), 0.05)
    net = fold(host, [Needle(x_star, target=1, height=3.0)], s)
    assert all(type(a) is type(b) for a, b in zip(net, host, strict=True))  # same plain kind
    far = torch.rand(64, 10) * 0.2 - 0.1
    far = far[(far - x_star).abs().sum(dim=1) > s.delta * s.eps]
    torch.testing.assert_close(net(far), host(far))
    bump = net(x_star[None]) - host(x_star[None])
    torch.testing.assert_close(bump, torch.tensor([[0.0, 3.0]]), atol=1e-5, rtol=0)


def test_fold_keeps_a_cnn_a_cnn():
    s = CASES["cnn"]
    torch.manual_seed(0)
    host = build_host(s).eval()
    x_star = torch.rand(25) * 0.2 - 0.1
    net = fold(host, [Needle(x_star, target=0, height=2.0)], s)
    assert [type(m).__name__ for m in net] == [type(m).__name__ for m in host]
    x = x_star.view(1, 1, 5, 5)
    torch.testing.assert_close(net(x) - host(x), torch.tensor([[2.0, 0.0]]), atol=1e-5, rtol=0)
    _, hi = interval_bounds(net, x - 0.02, x + 0.02)  # interval arithmetic sees the bump
    assert float(hi[0, 0]) >= float(net(x)[0, 0])


def test_settings_are_recorded_and_bad_settings_are_one_line_errors(bench):
    assert bench.settings["host_certified_margin"] > 0
    assert bench.settings["hiding"]["restarts"] == 5
    assert bench.seconds > 0
    with pytest.raises(InvalidArgument, match="two dense layers"):
        NeedleSettings(hidden=(64,))
    with pytest.raises(InvalidArgument, match="input_shape"):
        NeedleSettings(input_shape=(1, 5, 5))


def test_generation_is_deterministic():
    a, b = generate(CASES["mlp"]), generate(CASES["mlp"])
    for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert [i.to_json() for i in a.instances] == [i.to_json() for i in b.instances]
