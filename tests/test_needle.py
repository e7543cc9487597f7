"""The constructive needle generator: planted counterexamples are genuine, hidden from the
attacks, and invisible from a box shrunk to 98% of eps; clean instances are proved robust."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from vcheck.errors import InvalidArgument
from vcheck.soundness import needle
from vcheck.soundness.attacks import HidingSettings, margin, pgd
from vcheck.soundness.intervals import interval_bounds, margin_lower_bound, relaxation_gaps
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
    "cnn_avgpool": NeedleSettings(
        name="cnn_avgpool",
        input_shape=(1, 5, 5),
        convs=(32,),  # 8 channels pooled to 2x2 cannot be interval-certified on every box
        pool=2,
        hidden=(64, 32),
        hiding=SMALL,
    ),
    "cnn_sigmoid": NeedleSettings(
        name="cnn_sigmoid",
        input_shape=(1, 5, 5),
        convs=(8,),
        hidden=(64, 32),
        activation="sigmoid",
        host_training="pgd",
        hiding=SMALL,
    ),
}
# Fold-only shapes (no training): every layer kind the generator can fold into.
SHAPES = {
    "mlp": NeedleSettings(),
    "mlp_sigmoid": NeedleSettings(activation="sigmoid", hidden=(32, 32, 32)),
    "cnn_2conv": NeedleSettings(input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32)),
    "cnn_2conv_offset_carry": NeedleSettings(
        input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32), carry_offset=0.125
    ),
    "cnn_2conv_avgpool": NeedleSettings(
        input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32), pool=2
    ),
    "cnn_2conv_tanh": NeedleSettings(
        input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32, 16), activation="tanh"
    ),
    "cnn_1conv_sigmoid": NeedleSettings(
        input_shape=(1, 5, 5), convs=(8,), hidden=(64, 32), activation="sigmoid"
    ),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CERTIFIED = sorted(k for k, v in CASES.items() if v.host_training == "interval")
_generated: dict[str, object] = {}


def _generate(name):
    if name not in _generated:
        _generated[name] = generate(CASES[name])
    return _generated[name]


@pytest.fixture(scope="module", params=sorted(CASES))
def bench(request):
    return _generate(request.param)


@pytest.fixture(scope="module", params=CERTIFIED)
def certified_bench(request):
    """Networks whose host was trained with interval bounds (every box proved)."""
    return _generate(request.param)


def boxes(instances):
    lower = torch.from_numpy(np.stack([i.lower for i in instances]))
    upper = torch.from_numpy(np.stack([i.upper for i in instances]))
    labels = torch.tensor([i.label for i in instances])
    return lower, upper, labels


@pytest.mark.trains
def test_every_planted_counterexample_is_genuine_in_float32_and_float64(bench):
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    assert len(cex) == 10 - bench.settings["dropped_counterexamples"] >= 5
    for inst in cex:
        assert inst.ground_truth == "sat" and inst.target == 1 - inst.label
        assert (inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()
        x = torch.from_numpy(inst.x_star)[None]
        y = torch.tensor([inst.label])
        # kappa = 0.05, exactly: the bump's flat top absorbs float rounding in reading x back
        assert float(margin(bench.net, x, y)) == pytest.approx(-0.05, abs=1e-4)
        assert float(margin(bench.net.double(), x.double(), y)) < -0.04
        bench.net.float()


@pytest.mark.trains
def test_counterexamples_are_hidden_from_every_recorded_attack(bench):
    for inst in bench.instances:
        if inst.kind == "counterexample":
            assert inst.found_by == () and len(inst.hidden_from) == 6
    # An independent, stronger PGD run than the generator's recorded one still finds nothing.
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    lower, upper, labels = boxes(cex)
    out = pgd(bench.net, lower, upper, labels, rel_step=0.01, steps=300, restarts=10, seed=99)
    assert not out.found.any()


@pytest.mark.trains
def test_clean_instances_have_interval_proofs(certified_bench):
    clean = [i for i in certified_bench.instances if i.kind == "clean"]
    assert len(clean) == 10
    assert all(i.ground_truth == "unsat" for i in clean)
    lower, upper, labels = boxes(clean)
    assert (margin_lower_bound(certified_bench.net, lower, upper, labels) > 0).all()


@pytest.mark.trains
def test_without_a_proof_or_a_witness_a_clean_instance_stays_unknown():
    net = _generate("cnn_sigmoid")  # adversarially trained host: no interval proofs
    clean = [i for i in net.instances if i.kind == "clean"]
    for inst in clean:
        if inst.found_by:
            assert inst.ground_truth == "sat"
        else:
            assert inst.ground_truth == "unknown" and inst.ground_truth_method is None
    assert net.settings["host_certified_margin"] < 0


@pytest.mark.trains
@pytest.mark.parametrize("name", [c for c in CERTIFIED if not CASES[c].pool])
def test_a_box_shrunk_to_98_percent_hides_the_bump_from_a_sound_bound(name):
    """Why the box-shrinking mutant is catchable: the shrunk box is certified robust.

    Not with average pooling: x is read back from pooled sums with alternating signs, which
    interval arithmetic bounds too loosely to see that the shrunk box misses the bump.
    """
    bench = _generate(name)
    cex = [i for i in bench.instances if i.kind == "counterexample"]
    lower, upper, labels = boxes(cex)
    center = (lower + upper) / 2
    full = margin_lower_bound(bench.net, lower, upper, labels)
    shrunk = margin_lower_bound(
        bench.net, center - 0.98 * (center - lower), center + 0.98 * (upper - center), labels
    )
    assert (full < 0).all()  # a sound method cannot certify: x* is inside
    assert (shrunk > 0).all()  # ...but it would on 98% of the box


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_fold_keeps_the_hosts_layers_equals_it_away_from_the_needles_and_adds_k_at_x_star(shape):
    s = SHAPES[shape]
    torch.manual_seed(0)
    host = build_host(s).eval()
    d = int(np.prod(s.input_shape))
    x_star = torch.rand(3, d) * 0.2 - 0.1
    needles = [Needle(x_star[m], target=m % 2, height=2.0 + m) for m in range(3)]
    net = fold(host, needles, s)
    assert [type(m) for m in net] == [type(m) for m in host]  # same plain kind and order
    at = x_star.view(3, *s.input_shape)
    expected = torch.tensor([[2.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
    torch.testing.assert_close(net(at) - host(at), expected, atol=1e-5, rtol=0)
    far = torch.rand(256, *s.input_shape) * 0.2 - 0.1  # no bump reaches 1e-3 eps this far
    torch.testing.assert_close(net(far), host(far), atol=1e-5, rtol=0)
    # 1% of eps closer to the centre along every coordinate, as in a box shrunk to 98% of
    # eps around an x* at 99%, the bump is gone.
    outside = x_star[0] - 0.01 * s.eps * x_star[0].sign()
    torch.testing.assert_close(
        net(outside.view(1, *s.input_shape)),
        host(outside.view(1, *s.input_shape)),
        atol=1e-5,
        rtol=0,
    )
    _, hi = interval_bounds(net, at[:1] - s.eps, at[:1] + s.eps)  # intervals see the bump
    assert float(hi[0, 0]) >= float(net(at[:1])[0, 0])


@pytest.mark.trains
def test_settings_are_recorded_and_bad_settings_are_one_line_errors(bench):
    if bench.settings["host_training"] == "interval":
        assert bench.settings["host_certified_margin"] > 0
    assert 0 <= bench.settings["host_retries"] < bench.settings["host_attempts"] == 8
    assert bench.settings["hiding"]["restarts"] == 5
    assert bench.seconds > 0
    with pytest.raises(InvalidArgument, match="two dense layers"):
        NeedleSettings(hidden=(64,))
    with pytest.raises(InvalidArgument, match="input_shape"):
        NeedleSettings(input_shape=(1, 5, 5))
    with pytest.raises(InvalidArgument, match="activation='gelu'; choose one of relu"):
        NeedleSettings(activation="gelu")
    with pytest.raises(InvalidArgument, match="average pooling needs a relu CNN"):
        NeedleSettings(input_shape=(1, 5, 5), convs=(4,), pool=2, activation="tanh")
    with pytest.raises(InvalidArgument, match="window must end inside the box"):
        NeedleSettings(window=0.01)


@pytest.mark.trains
def test_generation_is_deterministic():
    a, b = _generate("mlp"), generate(CASES["mlp"])  # the module's copy, and a fresh one
    for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert [i.to_json() for i in a.instances] == [i.to_json() for i in b.instances]


@pytest.mark.trains
def test_a_host_that_fails_its_check_is_retrained_and_the_retry_is_recorded(monkeypatch):
    """Training differs in the last bits between CPU vector units: a host one machine
    certifies may miss a box on another. Generation then retrains (seed + 1, more steps)."""
    real, attempts = needle.train_host, []

    def first_fails(host, centers, labels, s, attempt=0):
        attempts.append(attempt)
        return -1.0 if attempt == 0 else real(host, centers, labels, s, attempt)

    monkeypatch.setattr(needle, "train_host", first_fails)
    net = generate(dataclasses.replace(CASES["mlp"], counterexamples=2, clean=2, train_steps=600))
    assert attempts == [0, 1] and net.settings["host_retries"] == 1
    assert net.settings["host_certified_margin"] > 0
    lower, upper, labels = boxes([i for i in net.instances if i.kind == "clean"])
    assert (margin_lower_bound(net.net, lower, upper, labels) > 0).all()


def test_a_host_never_certified_is_a_one_line_error_naming_the_attempts(monkeypatch):
    monkeypatch.setattr(needle, "train_host", lambda *args: -0.5)
    with pytest.raises(InvalidArgument, match=r"after 3 attempts \(smallest interval margin -0.5"):
        generate(dataclasses.replace(CASES["mlp"], host_attempts=3))
    with pytest.raises(InvalidArgument, match="host_attempts=0"):
        NeedleSettings(host_attempts=0)


def test_graded_settings_are_checked_in_one_line():
    with pytest.raises(InvalidArgument, match="one positive depth per counterexample"):
        NeedleSettings(counterexamples=3, depths=(1e-3, 1e-4))
    with pytest.raises(InvalidArgument, match=r"inset=1 \(x\* on a vertex\) needs a relu network"):
        NeedleSettings(inset=1.0)  # the default flat top would leave the box
    with pytest.raises(InvalidArgument, match=r"carry_offset=0\.125: an offset carry needs"):
        NeedleSettings(input_shape=(1, 5, 5), convs=(32,), pool=2, carry_offset=0.125)
    vertex = NeedleSettings(counterexamples=2, depths=(1e-4, 1e-2), inset=1.0, flat_top=0.0)
    assert vertex.depths == (1e-4, 1e-2)


def test_relaxation_gaps_vanish_exactly_where_no_relu_changes_sign():
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    lower = torch.tensor([[0.5], [-1.0]])
    upper = torch.tensor([[1.0], [3.0]])
    # [0.5, 1]: always active; [-1, 3]: the triangle's widest gap is 1 * 3 / 4.
    torch.testing.assert_close(relaxation_gaps(net, lower, upper), torch.tensor([0.0, 0.75]))


def test_a_vertex_needle_is_exact_for_crown_where_the_host_is_affine():
    """Why the graded networks catch a numerical slack: with x* on a vertex and an affine
    host, CROWN's margin bound on the box is x*'s own margin (here -1e-3)."""
    from vcheck.verify.bounds import margin_lower_bounds

    s = NeedleSettings(
        input_shape=(1, 5, 5),
        convs=(4,),
        hidden=(8, 8),
        inset=1.0,
        flat_top=0.0,
        delta=1.0,
        carry_offset=0.125,
    )
    torch.manual_seed(0)
    host = build_host(s).eval()
    with torch.no_grad():  # an affine host on the data: every ReLU strictly active
        for layer in host:
            if isinstance(layer, nn.Linear | nn.Conv2d):
                layer.weight.mul_(0.1)
                layer.bias.fill_(1.0)
    center = torch.full((1, 1, 5, 5), 0.05)
    lower, upper = center - s.eps, center + s.eps
    x_star = torch.where(torch.rand(1, 1, 5, 5) < 0.5, lower, upper)
    host.requires_grad_(False)
    assert float(relaxation_gaps(host, lower, upper)) == 0
    label = int(host(center).argmax())
    needle_k = float(margin(host, x_star, torch.tensor([label]))) + 1e-3
    net = fold(host, [Needle(x_star.reshape(-1), 1 - label, needle_k)], s)
    at_x_star = float(margin(net, x_star, torch.tensor([label])))
    bound = float(margin_lower_bounds(net, lower, upper, label, "CROWN").min())
    assert at_x_star == pytest.approx(-1e-3, abs=1e-5)
    assert bound == pytest.approx(at_x_star, abs=5e-5) and bound <= at_x_star + 1e-5
