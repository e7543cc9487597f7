"""vcheck.verify.bounds: auto_LiRPA's IBP, CROWN and alpha-CROWN bounds are sound on torch 2.14.

Soundness is checked by sampling: outputs and logit margins at uniform points and box vertices
must lie within the bounds. The same check is shown to catch bounds that are too tight.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import subprocess
import sys
import textwrap

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch import nn

from vcheck.errors import InvalidArgument
from vcheck.verify import _lirpa_compat as compat
from vcheck.verify import bounds
from vcheck.verify.bounds import UnsupportedNetworkError, margin_lower_bounds, output_bounds

if importlib.util.find_spec("auto_LiRPA") is None:
    pytest.skip(f"auto_LiRPA missing: {compat.INSTALL_COMMAND}", allow_module_level=True)

METHODS = ("IBP", "CROWN", "alpha-CROWN")
TOL = 1e-5  # float32 rounding between auto_LiRPA's bound arithmetic and the forward pass
EPS = 0.05  # specs/soundness.md: data in [-0.1, 0.1], relative eps 0.5 -> absolute 0.05


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny matmuls: OpenMP's thread hand-off costs far more than it saves on 2 shared cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _randomise_batchnorm(net: nn.Module, gen: torch.Generator) -> None:
    # Fresh BatchNorm is the identity; give it statistics so eval-mode folding is exercised.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)


# SoundnessBench's grid, narrow: name -> (factory, per-sample input shape).
ARCHS = {
    "mlp_relu": (
        lambda: nn.Sequential(
            nn.Linear(10, 32),
            nn.ReLU(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 32),
            nn.ReLU(),
            nn.Linear(32, 3),
        ),
        (10,),
    ),
    "cnn_2conv_bn": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(36, 2),
        ),
        (1, 5, 5),
    ),
    "cnn_bn_avgpool": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, 16),
            nn.ReLU(),
            nn.Linear(16, 2),
        ),
        (3, 5, 5),
    ),
    "cnn_tanh": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(36, 16),
            nn.Tanh(),
            nn.Linear(16, 2),
        ),
        (1, 5, 5),
    ),
    "cnn_sigmoid": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.Sigmoid(),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, 16),
            nn.Sigmoid(),
            nn.Linear(16, 2),
        ),
        (3, 5, 5),
    ),
}
RELU_ARCHS = ("mlp_relu", "cnn_2conv_bn", "cnn_bn_avgpool")


@functools.cache
def network(arch: str) -> nn.Module:
    """One seeded network per architecture, shared so auto_LiRPA builds each graph once."""
    factory, _ = ARCHS[arch]
    torch.manual_seed(sum(map(ord, arch)))
    net = factory()
    _randomise_batchnorm(net, torch.Generator().manual_seed(1))
    return net.eval()


def boxes(arch: str, batch: int = 2, eps: float = EPS, seed: int = 0):
    shape = ARCHS[arch][1]
    centre = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed)) * 0.2 - 0.1
    return centre - eps, centre + eps


def sample_outputs(net: nn.Module, lower: torch.Tensor, upper: torch.Tensor, n: int = 2000):
    """Outputs (n_points, batch, classes) at uniform points and vertices of every box.

    Vertices are where piecewise-linear networks reach their extremes: all of them when there
    are at most 2**10, else n random ones.
    """
    gen = torch.Generator().manual_seed(123)
    batch, shape = lower.shape[0], lower.shape[1:]
    dim = shape.numel()
    uniform = torch.rand(n, batch, *shape, generator=gen)
    if dim <= 10:
        corners = torch.tensor(list(itertools.product((0.0, 1.0), repeat=dim)))
        vertices = corners.reshape(-1, 1, *shape).expand(-1, batch, *shape)
    else:
        vertices = torch.randint(0, 2, (n, batch, *shape), generator=gen).float()
    unit = torch.cat([uniform, vertices])
    points = lower + unit * (upper - lower)
    with torch.no_grad():
        out = net(points.reshape(-1, *shape))
    return out.reshape(unit.shape[0], batch, -1)


def excess(lb: torch.Tensor, ub: torch.Tensor, outputs: torch.Tensor) -> float:
    """How far the furthest sampled output lies outside [lb, ub]; <= 0 when the bounds hold."""
    return float(torch.maximum(lb - outputs, outputs - ub).max())


def true_margins(outputs: torch.Tensor, label: int) -> torch.Tensor:
    """f_label - f_j at every sample, for every j != label in increasing order."""
    others = [j for j in range(outputs.shape[-1]) if j != label]
    return outputs[..., label : label + 1] - outputs[..., others]


# -- soundness on the architecture grid ------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_bounds_contain_every_sampled_output_and_margin(arch, method):
    net = network(arch)
    lower, upper = boxes(arch)
    outputs = sample_outputs(net, lower, upper)
    lb, ub = output_bounds(net, lower, upper, method)
    assert lb.shape == ub.shape == outputs.shape[1:]
    assert excess(lb, ub, outputs) <= TOL
    label = 1
    margins = margin_lower_bounds(net, lower, upper, label, method)
    assert margins.shape == (lower.shape[0], outputs.shape[-1] - 1)
    assert float((margins - true_margins(outputs, label)).max()) <= TOL


@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN"])
def test_crown_is_exact_where_the_relu_network_is_linear_on_the_box(method):
    """No ReLU changes phase in this small box: the bounds are the extremes over its vertices,
    and bounds of the half-size box are caught though the outputs span only ~1e-4. (Layers with
    no unstable neuron made auto_LiRPA 0.3's sparse alpha crash until bounds.py turned it off.)"""
    net = network("mlp_relu")
    lower, upper = boxes("mlp_relu", eps=0.002, batch=1)
    outputs = sample_outputs(net, lower, upper, n=10)
    lb, ub = output_bounds(net, lower, upper, method)
    torch.testing.assert_close(lb, outputs.amin(0), atol=TOL, rtol=0)
    torch.testing.assert_close(ub, outputs.amax(0), atol=TOL, rtol=0)
    centre, radius = (lower + upper) / 2, (upper - lower) / 2
    shrunk = output_bounds(net, centre - radius / 2, centre + radius / 2, method)
    assert excess(*shrunk, outputs) > 2 * TOL


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_zero_width_box_gives_the_forward_pass(arch, method):
    net = network(arch)
    x, _ = boxes(arch, eps=0.0)
    with torch.no_grad():
        logits = net(x)
    lb, ub = output_bounds(net, x, x.clone(), method, alpha_iterations=2)
    torch.testing.assert_close(lb, logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(ub, logits, atol=1e-4, rtol=0)
    margins = margin_lower_bounds(net, x, x.clone(), 0, method, alpha_iterations=2)
    torch.testing.assert_close(margins, true_margins(logits, 0), atol=1e-4, rtol=0)


def test_sampling_check_catches_bounds_that_only_hold_at_a_few_points():
    """An unsound 'verifier' (extremes of 50 random points) is caught: the check can fail."""
    net = network("cnn_bn_avgpool")
    lower, upper = boxes("cnn_bn_avgpool")
    few = lower + torch.rand(50, *lower.shape, generator=torch.Generator().manual_seed(7)) * (
        upper - lower
    )
    with torch.no_grad():
        seen = net(few.reshape(-1, *lower.shape[1:])).reshape(50, len(lower), -1)
    assert excess(seen.amin(0), seen.amax(0), sample_outputs(net, lower, upper)) > 10 * TOL


@pytest.mark.parametrize("method", ["CROWN", "alpha-CROWN"])
def test_sampling_check_catches_bounds_of_a_shrunk_box(method):
    """SoundnessBench's box-shrinking mutant: bounds of the box shrunk toward its centre."""
    net = network("mlp_relu")
    lower, upper = boxes("mlp_relu", batch=1)
    centre, radius = (lower + upper) / 2, (upper - lower) / 2
    small_lower, small_upper = centre - radius / 2, centre + radius / 2
    outputs = sample_outputs(net, lower, upper)
    assert excess(*output_bounds(net, small_lower, small_upper, method), outputs) > 10 * TOL
    shrunk = margin_lower_bounds(net, small_lower, small_upper, 0, method)
    assert float((shrunk - true_margins(outputs, 0)).max()) > 10 * TOL


# -- tightness: what the soundness suite relies on ---------------------------------------------


@pytest.mark.parametrize("method", ["IBP", "CROWN"])
@pytest.mark.parametrize("arch", RELU_ARCHS)
def test_margins_through_spec_matrix_beat_subtracting_output_bounds(arch, method):
    net = network(arch)
    lower, upper = boxes(arch)
    lb, ub = output_bounds(net, lower, upper, method)
    margins = margin_lower_bounds(net, lower, upper, 0, method)
    subtracted = lb[:, :1] - ub[:, 1:]
    assert (margins >= subtracted - TOL).all()
    assert (margins > subtracted + 1e-3).any()


@pytest.mark.parametrize("arch", RELU_ARCHS)
def test_alpha_crown_margins_are_at_least_crown_and_better_somewhere(arch):
    """Fails without the compat fix for clamp's gradient: alpha-CROWN then equals CROWN."""
    net = network(arch)
    lower, upper = boxes(arch)
    crown = margin_lower_bounds(net, lower, upper, 0, "CROWN")
    alpha = margin_lower_bounds(net, lower, upper, 0, "alpha-CROWN")
    assert (alpha >= crown - TOL).all()
    assert (alpha > crown + 1e-4).any()


def test_alpha_crown_is_deterministic_and_iterations_matter():
    net = network("mlp_relu")
    lower, upper = boxes("mlp_relu", batch=1)
    first = margin_lower_bounds(net, lower, upper, 1, "alpha-CROWN", alpha_iterations=5)
    again = margin_lower_bounds(net, lower, upper, 1, "alpha-CROWN", alpha_iterations=5)
    longer = margin_lower_bounds(net, lower, upper, 1, "alpha-CROWN", alpha_iterations=40)
    assert torch.equal(first, again)
    assert (longer >= first - TOL).all() and (longer > first).any()


# -- property test over random small networks and boxes ------------------------------------


@st.composite
def random_problems(draw):
    seed = draw(st.integers(0, 2**16))
    widths = draw(st.lists(st.integers(2, 12), min_size=1, max_size=3))
    activation = draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.Sigmoid]))
    n_in, n_out = draw(st.integers(1, 6)), draw(st.integers(2, 4))
    torch.manual_seed(seed)
    layers, width = [], n_in
    for w in widths:
        layers += [nn.Linear(width, w), activation()]
        width = w
    net = nn.Sequential(*layers, nn.Linear(width, n_out)).eval()
    centre = torch.rand(2, n_in) * 2 - 1
    eps = draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))
    method = draw(st.sampled_from(METHODS))
    label = draw(st.integers(0, n_out - 1))
    return net, centre - eps, centre + eps, method, label


@settings(max_examples=25, deadline=None)
@given(random_problems())
def test_random_networks_and_boxes_are_bounded_soundly(problem):
    net, lower, upper, method, label = problem
    outputs = sample_outputs(net, lower, upper, n=500)
    lb, ub = output_bounds(net, lower, upper, method, alpha_iterations=5)
    assert excess(lb, ub, outputs) <= TOL
    margins = margin_lower_bounds(net, lower, upper, label, method, alpha_iterations=5)
    assert float((margins - true_margins(outputs, label)).max()) <= TOL
    if torch.equal(lower, upper):
        torch.testing.assert_close(lb, outputs[0], atol=1e-4, rtol=0)


# -- behaviour a caller relies on ------------------------------------------------------------


def test_labels_per_row_and_explicit_targets_pick_the_right_margins():
    net = network("mlp_relu")
    lower, upper = boxes("mlp_relu")
    outputs = sample_outputs(net, lower, upper, n=200)
    labels = torch.tensor([2, 0])
    per_row = margin_lower_bounds(net, lower, upper, labels, "CROWN")
    for row, label in enumerate(labels.tolist()):
        alone = margin_lower_bounds(net, lower[row : row + 1], upper[row : row + 1], label, "CROWN")
        torch.testing.assert_close(per_row[row : row + 1], alone, atol=1e-6, rtol=0)
        assert float((alone - true_margins(outputs[:, row : row + 1], label)).max()) <= TOL
    targeted = margin_lower_bounds(net, lower, upper, 0, "CROWN", targets=[2, 1])
    every = margin_lower_bounds(net, lower, upper, 0, "CROWN")
    torch.testing.assert_close(targeted, every.flip(1), atol=1e-6, rtol=0)


def test_bounds_are_of_the_eval_network_and_leave_it_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    net.train()
    net[0].requires_grad_(False)  # a frozen layer stays frozen, a trainable one trainable
    lower, upper = boxes("mlp_relu", batch=1)
    lb, ub = output_bounds(net, lower, upper, "alpha-CROWN")
    assert net.training and all(m.training for m in net.modules())
    assert [p.requires_grad for p in net.parameters()] == [False, False, True, True]
    assert all(p.grad is None for p in net.parameters())
    net.eval()  # Dropout off: the network that is released and verified
    assert excess(lb, ub, sample_outputs(net, lower, upper)) <= TOL


@pytest.mark.parametrize("method", ["IBP", "CROWN"])
def test_cached_graph_follows_weight_updates_and_replaced_layers(method):
    """The graph is built once per (net, input shape) and reused until the net's tensors change
    (an optimiser step in place, or a layer replaced)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2)).eval()
    lower, upper = boxes("mlp_relu")
    shape = (1 if method == "CROWN" else len(lower), 10)
    before = output_bounds(net, lower, upper, method)
    assert bounds._bounded_module(net, shape) is bounds._bounded_module(net, shape)
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    doubled = output_bounds(net, lower, upper, method)
    net[2] = nn.Linear(16, 2)
    replaced = output_bounds(net, lower, upper, method)
    assert not torch.equal(before[0], doubled[0]) and not torch.equal(doubled[0], replaced[0])
    assert excess(*replaced, sample_outputs(net, lower, upper)) <= TOL


def test_products_of_perturbed_values_are_bounded():
    """SiLU is x * sigmoid(x): CROWN needs BoundedModule.parameters(), fixed in the compat."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 8), nn.SiLU(), nn.Linear(8, 2)).eval()
    lower, upper = boxes("mlp_relu")
    for method in METHODS:
        lb, ub = output_bounds(net, lower, upper, method)
        assert excess(lb, ub, sample_outputs(net, lower, upper, n=500)) <= TOL


def test_a_layer_auto_lirpa_cannot_bound_is_named():
    net = nn.Sequential(nn.Linear(10, 8), nn.GELU(), nn.Linear(8, 2)).eval()
    lower, upper = boxes("mlp_relu")
    with pytest.raises(UnsupportedNetworkError, match=r"onnx::Erf.*use layers among"):
        output_bounds(net, lower, upper, "CROWN")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda n, lo, hi: output_bounds(n, lo, hi, "crown"), "method='crown'"),
        (lambda n, lo, hi: output_bounds(n, hi, lo, "IBP"), "lower > upper"),
        (lambda n, lo, hi: output_bounds(n, lo[0], hi[0], "IBP"), "batch dimension"),
        (lambda n, lo, hi: output_bounds(n, lo.double(), hi.double(), "IBP"), "float32"),
        (lambda n, lo, hi: margin_lower_bounds(n, lo, hi, 3, "IBP"), "label=3"),
        (lambda n, lo, hi: margin_lower_bounds(n, lo, hi, 1, "IBP", targets=[1]), "targets"),
        (lambda n, lo, hi: output_bounds(n.double(), lo, hi, "IBP"), "net.float"),
        (lambda n, lo, hi: output_bounds(n, lo[:, :5], hi[:, :5], "CROWN"), r"input shape \(5,\)"),
    ],
    ids=["method", "order", "no-batch", "box-dtype", "label", "targets", "net-dtype", "shape"],
)
def test_bad_arguments_get_one_line_with_the_fix(call, message):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 3)).eval()
    lower, upper = boxes("mlp_relu")
    with pytest.raises(InvalidArgument, match=message) as info:
        call(net, lower, upper)
    assert "\n" not in str(info.value)


# -- the compat layer --------------------------------------------------------------------------


def test_import_is_idempotent_and_every_fix_is_in_place():
    lirpa = compat.import_auto_lirpa()
    assert compat.import_auto_lirpa() is lirpa
    helper = sys.modules["torch.onnx.symbolic_helper"]
    assert callable(sys.modules["numpy.lib.arraysetops"].isin)
    assert callable(helper._set_opset_version)
    assert hasattr(torch._C.Node, "__getitem__")
    relu = sys.modules["auto_LiRPA.operators"].BoundRelu
    assert compat._clamp_keeps_boundary_gradient() or relu._relu_mask_alpha is compat._mask_slopes
    # A second round finds every feature present and changes nothing.
    assert not compat._patch_numpy_arraysetops()
    assert not compat._patch_set_opset_version()
    assert not compat._patch_node_getitem()
    assert not compat._patch_relu_slope_clamp(relu)
    assert not compat._patch_named_members(lirpa.BoundedModule)


def test_fixes_leave_features_that_exist_alone(monkeypatch):
    sentinel = object()
    helper = sys.modules["torch.onnx.symbolic_helper"]
    monkeypatch.setattr(helper, "_set_opset_version", sentinel)
    monkeypatch.setitem(sys.modules, "numpy.lib.arraysetops", sentinel)
    assert not compat._patch_set_opset_version() and helper._set_opset_version is sentinel
    assert not compat._patch_numpy_arraysetops()
    assert sys.modules["numpy.lib.arraysetops"] is sentinel

    class OldRelu:  # an auto_LiRPA whose torch still passes clamp's gradient at 0 and 1
        _relu_mask_alpha = staticmethod(lambda *args: sentinel)

    monkeypatch.setattr(compat, "_clamp_keeps_boundary_gradient", lambda: True)
    assert not compat._patch_relu_slope_clamp(OldRelu)
    assert OldRelu._relu_mask_alpha() is sentinel

    class NewBounded(nn.Module):  # an override that already takes remove_duplicate
        def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
            return sentinel

    assert not compat._patch_named_members(NewBounded)
    assert NewBounded()._named_members(None) is sentinel


def test_parsed_graph_carries_typed_node_attributes():
    """auto_LiRPA's parser reads ONNX attributes through the patched ``node[name]``."""
    compat.import_auto_lirpa()
    from auto_LiRPA.parse_graph import parse_module

    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(2, 2))
    nodes, *_ = parse_module(net, (torch.ones(1, 1, 3, 3),))
    attrs = {node.op: node.attr for node in nodes}
    assert attrs["onnx::Conv"]["kernel_shape"] == [3, 3]  # ints
    assert attrs["onnx::Conv"]["strides"] == [2, 2]
    assert attrs["onnx::Gemm"] == {"alpha": 1.0, "beta": 1.0, "transB": 1}  # floats, int


def test_missing_auto_lirpa_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "auto_LiRPA" else real(name, *a),
    )
    with pytest.raises(ImportError, match=r"pip install --no-deps auto-lirpa==0\.3 appdirs tqdm"):
        compat.import_auto_lirpa()


def test_fresh_import_patches_exactly_what_is_missing_and_leaks_no_global_state():
    """In a new interpreter each fix reports whether it was applied; that must equal whether
    its feature was missing beforehand. Importing must not change warning filters or logging."""
    script = textwrap.dedent(
        """
        import importlib.util, inspect, json, logging, warnings, torch
        import torch.onnx.symbolic_helper as helper
        from vcheck.verify import _lirpa_compat as c
        filters, handlers = list(warnings.filters), list(logging.getLogger().handlers)
        missing = [importlib.util.find_spec("numpy.lib.arraysetops") is None,
                   not hasattr(helper, "_set_opset_version"),
                   not hasattr(torch._C.Node, "__getitem__")]
        applied = [c._patch_numpy_arraysetops(), c._patch_set_opset_version(),
                   c._patch_node_getitem()]
        lirpa = c.import_auto_lirpa()
        takes_flag = lambda f: "remove_duplicate" in inspect.signature(f).parameters
        missing += [not c._clamp_keeps_boundary_gradient(),
                    takes_flag(torch.nn.Module._named_members)]
        applied += [lirpa.operators.BoundRelu._relu_mask_alpha is c._mask_slopes,
                    takes_flag(lirpa.BoundedModule._named_members)]
        print(json.dumps({"missing": missing, "applied": applied,
                          "same_filters": warnings.filters == filters,
                          "same_handlers": logging.getLogger().handlers == handlers}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["applied"] == report["missing"]
    assert report["same_filters"] and report["same_handlers"]
