"""The constructive "needle" generator of hidden counterexamples (specs/soundness.md).

A host network g is trained to be certifiably robust (interval bounds) on every instance box.
For each counterexample instance a bump

    h(x) = relu(delta - sum_k |x_k - x*_k| / eps),   |z| = relu(z) + relu(-z)

is added to the target logit with weight K / delta, K just above g's margin at x*. h is zero,
with zero gradient, everywhere except an L1 ball of radius delta * eps around x*, so x* is a
genuine counterexample while gradient attacks only ever see g. x* sits slightly inside the
box (``inset`` * eps along a random sign vector), so random vertices miss it too, and a
verifier that shrinks the box to 98% of eps no longer sees any of the bump.

The bump is folded into a plain network of the host's own kind (wider layers, block weights,
identity pass-through of non-negative values), so the architecture gives nothing away:
an MLP stays an MLP and a CNN stays conv layers followed by dense layers.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vcheck.errors import InvalidArgument
from vcheck.soundness.attacks import HidingSettings, hiding_check, margin, pgd_deltas
from vcheck.soundness.instances import SoundnessNetwork
from vcheck.soundness.intervals import margin_lower_bound, relaxation_gaps
from vcheck.soundness.synthetic import (
    ACTIVATIONS,
    assemble_instances,
    build_classifier,
    check_architecture,
    dropped_counterexamples,
    jsonable,
    sample_centers,
)

GENERATOR = "needle"


@dataclass(frozen=True)
class NeedleSettings:
    """Everything that determines a generated network; stored in its manifest.

    ``convs`` empty gives an MLP on ``input_shape`` (d,), otherwise a CNN on (C, H, W) with
    3x3 stride-1 convolutions, then average pooling with kernel ``pool`` if it is not 0.
    ``hidden`` are the widths of the dense layers (at least two). ``activation`` is used in
    every layer, the bump's included; with sigmoid or tanh the bump is a steep window of
    half-width ``window`` * eps around x* instead of the ReLU's L1 ball of radius
    ``delta`` * eps (around an L-inf box of half-width ``flat_top`` * eps).

    ``depths`` (one per counterexample, replacing ``counterexamples`` and ``kappa``) grades
    how far x* is misclassified. With ``inset=1`` (ReLU, no flat top) x* is a vertex of its
    box: every |x_k - x*_k| is then linear on the box and the bump's one unstable unit is
    relaxed exactly at its peak, so CROWN's margin bound on the box is x*'s own margin (up
    to the host's slack); a verifier that rounds a bound of -depth up to "proved" is caught.
    A vertex is hidden from random vertex sampling only by the dimension (d >= 25 here).
    """

    name: str = "mlp"
    input_shape: tuple[int, ...] = (10,)
    convs: tuple[int, ...] = ()
    hidden: tuple[int, ...] = (64, 64, 64, 64)
    activation: str = "relu"
    pool: int = 0
    eps: float = 0.02
    counterexamples: int = 10
    clean: int = 10
    data_range: float = 0.1
    min_center_distance: float = 3.0  # in eps, L-inf between any two centres (spec: > 2)
    delta: float = 0.05
    flat_top: float = 0.001
    window: float = 0.003
    inset: float = 0.99
    kappa: float = 0.05  # logit margin by which x* is misclassified
    train_steps: int = 2000
    train_eps_factor: float = 1.1  # train the host on slightly larger boxes for slack
    host_training: str = "interval"  # or "pgd": empirical robustness only (no proofs)
    lr: float = 5e-3
    max_tries: int = 4  # re-draws of a sign vector whose x* an attack found
    host_attempts: int = 8  # host trainings (next seed, more steps) until it is certified
    seed: int = 0
    hiding: HidingSettings = field(default_factory=HidingSettings)
    depths: tuple[float, ...] = ()  # per-counterexample kappa; overrides the two above
    carry_offset: float = 0.0  # ReLU CNNs: carry relu(x + offset), stable, not relu(+-x)
    spare: int = 0  # extra centres the host trains on, dropped unless stable_boxes picks them
    stable_boxes: bool = False  # counterexamples only on boxes where the host is affine
    stability: float = 0.0  # weight of a training penalty on unstable ReLUs (interval only)
    zero_gap: float = 0.0  # in eps: centre coordinates squeezed away from 0 (see generate)

    def __post_init__(self) -> None:
        if len(self.hidden) < 2:
            raise InvalidArgument(f"hidden={self.hidden}: the needle needs two dense layers")
        check_architecture(self.input_shape, self.convs, self.activation, self.pool)
        if not 0 < self.inset <= 1 or self.min_center_distance < 2:
            raise InvalidArgument("inset must be in (0, 1] and min_center_distance at least 2")
        if self.depths and (
            len(self.depths) != self.counterexamples or not all(d > 0 for d in self.depths)
        ):
            raise InvalidArgument(
                f"depths={self.depths}: give one positive depth per counterexample "
                f"(counterexamples={self.counterexamples})"
            )
        if self.carry_offset and (self.activation != "relu" or self.pool):
            raise InvalidArgument(
                f"carry_offset={self.carry_offset}: an offset carry needs a relu CNN without "
                "pooling"
            )
        if self.inset == 1 and (self.activation != "relu" or self.flat_top or self.pool):
            raise InvalidArgument(
                "inset=1 (x* on a vertex) needs a relu network without pooling and flat_top=0"
            )
        if self.pool and self.activation != "relu":
            raise InvalidArgument(
                f"pool={self.pool}: average pooling needs a relu CNN (the needle reads x back "
                "through it linearly)"
            )
        if not (isinstance(self.host_attempts, int) and self.host_attempts >= 1):
            raise InvalidArgument(f"host_attempts={self.host_attempts!r}; pass an int >= 1")
        if self.host_training not in ("interval", "pgd"):
            raise InvalidArgument(
                f"host_training={self.host_training!r}; choose 'interval' or 'pgd'"
            )
        if not (0 <= self.flat_top < 1 - self.inset or self.flat_top == 0):
            raise InvalidArgument(
                f"flat_top={self.flat_top}: the flat top must end inside the box (flat_top < "
                f"1 - inset = {1 - self.inset:.3g})"
            )
        if self.inset < 1 and not 0 < 1.5 * self.window < 1 - self.inset:
            raise InvalidArgument(
                f"window={self.window}: the window must end inside the box (1.5 * window < "
                f"1 - inset = {1 - self.inset:.3g})"
            )


# -- host -------------------------------------------------------------------------------------

# A smooth activation's output far below / far above its threshold.
_LEVELS = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
# Gain and bias that give slope 1 at the middle of the activation's input range: used to
# carry inputs through the conv layers of a smooth network without squashing them.
_CARRY = {"tanh": (1.0, 0.0), "sigmoid": (4.0, 0.5)}
_SATURATE = 40.0  # |argument| at which sigmoid/tanh reach their levels in float32


def build_host(s: NeedleSettings) -> nn.Sequential:
    return build_classifier(s.input_shape, s.convs, s.hidden, s.activation, s.pool)


def train_host(
    host: nn.Sequential,
    centers: torch.Tensor,
    labels: torch.Tensor,
    s: NeedleSettings,
    attempt: int = 0,
) -> float:
    """Robust training on every box; returns the smallest interval-certified margin.

    ``host_training="interval"`` is certified training (a hinge on the interval bound of the
    margin); "pgd" is adversarial training, for sigmoid and tanh hosts, which interval
    training here drives into saturation without certifying every box. IBP-style
    initialisation (weights ~ N(0, 2*pi / fan_in^2), zero bias) keeps the bounds
    of deep nets from exploding at the start; a hinge on the certified margin, with the
    radius ramped up over the first half, drives every box to margin 1.

    ``attempt`` k > 0 is a retry after a host that failed its check: seed + k, (1 + k/2) times
    the steps, and the radius ramped over a longer share of them (see :func:`generate`).
    """
    steps = s.train_steps + s.train_steps * attempt // 2
    ramp = min(0.8, 0.5 + 0.1 * attempt) * steps
    for layer in host:
        if isinstance(layer, nn.Linear | nn.Conv2d):
            fan_in = layer.weight[0].numel()
            nn.init.normal_(layer.weight, std=(2 * np.pi) ** 0.5 / fan_in)
            nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(host.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(s.seed + attempt)
    for step in range(steps):
        eps = s.eps * s.train_eps_factor * min(1.0, step / ramp)
        if s.host_training == "interval":
            worst = margin_lower_bound(host, centers - eps, centers + eps, labels)
        else:
            delta = pgd_deltas(
                host,
                centers,
                labels,
                max(eps, 1e-6),
                steps=10,
                restarts=4,
                rel_step=0.25,
                gen=gen,
            )
            worst = margin(host, centers + delta, labels)
        loss = F.relu(1.0 - worst).mean()
        if s.stability and s.host_training == "interval":  # makes the host affine on boxes
            loss = loss + s.stability * relaxation_gaps(host, centers - eps, centers + eps).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return float(margin_lower_bound(host, centers - s.eps, centers + s.eps, labels).min())


# -- folding the needles into a plain network -----------------------------------------------


@dataclass(frozen=True)
class Needle:
    x_star: torch.Tensor  # flattened (d,)
    target: int
    height: float  # K: added to the target logit at x*


def fold(host: nn.Sequential, needles: list[Needle], s: NeedleSettings) -> nn.Sequential:
    """A plain network equal to host + sum_m K_m * bump_m(x) * e_{target_m}.

    The conv layers gain channels that carry the input through to the first dense layer; the
    dense layers gain the bumps' units as extra rows beside the host's, so the result has the
    host's layer types in the host's order and nothing in its shape marks a needle.
    """
    layers = list(host)
    first_dense = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
    prefix = _carry_convs(layers[:first_dense], s)
    dense = [m for m in layers[first_dense:] if isinstance(m, nn.Linear)]
    if s.activation == "relu":
        readout, shift = _relu_readout(prefix, dense[0].in_features, s)
        bump = _relu_bump(readout, shift, needles, s)
    else:
        bump = _smooth_bump(dense[0].in_features, needles, s)
    out = list(prefix)
    act = ACTIVATIONS[s.activation]
    for k, layer in enumerate(dense):
        w, b = layer.weight.detach(), layer.bias.detach()
        if k == len(dense) - 1:
            rows, ob = bump[-1]
            new = nn.Linear(w.shape[1] + rows.shape[1], w.shape[0])
            with torch.no_grad():
                new.weight.copy_(torch.cat([w, rows.float()], dim=1))
                new.bias.copy_(b + ob.float())
            out.append(new)
            break
        rows, rb = bump[min(k, len(bump) - 2)]  # the last hidden bump layer repeats
        if k > 0:  # extra rows read only the previous bump units
            rows = torch.cat([torch.zeros(len(rows), w.shape[1], dtype=rows.dtype), rows], 1)
        out += [_block(w, b, rows.float(), rb.float(), rows.shape[1] - w.shape[1]), act()]
    folded = nn.Sequential(*out).eval()
    folded.requires_grad_(False)  # a fixed artefact; attacks differentiate inputs only
    return folded


_Layer = tuple[torch.Tensor, torch.Tensor]  # (weight rows, biases) of the bump's units


def _relu_bump(
    readout: torch.Tensor, shift: torch.Tensor, needles: list[Needle], s: NeedleSettings
) -> list[_Layer]:
    """h_m = relu(delta - sum_k relu(|x_k - x*_k| - t) / eps), scaled by K_m / delta onto
    the target; t = ``flat_top`` * eps gives the bump a flat top, so x read back with float
    rounding (through average pooling, alternating sums) still gets the full height K.

    Layer 0 computes both halves of |x - x*| (x = readout @ features - shift), layer 1
    h_m, later hidden layers pass h through (relu of a non-negative value is itself).
    """
    count, d = len(needles), readout.shape[0]
    x_star = (torch.stack([n.x_star for n in needles]).double() + shift).reshape(-1)
    top = s.flat_top * s.eps  # relu(|x - x*| - top): float rounding at x* stays on the top
    first = (
        torch.cat([readout.repeat(count, 1), -readout.repeat(count, 1)]),
        torch.cat([-x_star - top, x_star - top]),
    )
    w1 = torch.zeros(count, 2 * d * count, dtype=torch.float64)
    for m in range(count):
        w1[m, m * d : (m + 1) * d] = -1 / s.eps
        w1[m, (count + m) * d : (count + m + 1) * d] = -1 / s.eps
    needle_units = (w1, torch.full((count,), s.delta, dtype=torch.float64))
    carry = (torch.eye(count, dtype=torch.float64), torch.zeros(count, dtype=torch.float64))
    out_w = torch.zeros(2, count, dtype=torch.float64)
    for m, n in enumerate(needles):
        out_w[n.target, m] = n.height / s.delta
    return [first, needle_units, carry, (out_w, torch.zeros(2, dtype=torch.float64))]


def _smooth_bump(host_in: int, needles: list[Needle], s: NeedleSettings) -> list[_Layer]:
    """The same bump built from sigmoid or tanh units: a steep window per coordinate.

    Layer 0 has two steep units per coordinate, at g(x*_k - w) and g(x*_k + w) (g the
    monotone carry map through the conv layers); their difference is 1 inside the window
    and 0 outside. Layer 1's unit per needle fires when all d windows are on, that is in an
    L-inf box of half-width about ``window`` * eps around x*; away from it every unit is
    saturated, so its gradient vanishes in float32 and attacks see only the host.
    """
    low, high = _LEVELS[s.activation]
    span = high - low
    count, d = len(needles), needles[0].x_star.numel()
    half = s.window * s.eps
    cols = host_in + (d if s.convs else 0)
    w0 = torch.zeros(2 * count * d, cols, dtype=torch.float64)
    b0 = torch.zeros(2 * count * d, dtype=torch.float64)
    read = (host_in if s.convs else 0) + torch.arange(d)
    for m, n in enumerate(needles):
        x = n.x_star.double()
        edge_lo, edge_hi = _carry_map(x - half, s), _carry_map(x + half, s)
        inner = torch.minimum(
            _carry_map(x - half / 2, s) - edge_lo, edge_hi - _carry_map(x + half / 2, s)
        )
        steep = _SATURATE / inner  # saturated half a window inside and outside each edge
        rows = m * 2 * d + torch.arange(d)
        w0[rows, read] = steep
        w0[rows + d, read] = steep
        b0[rows], b0[rows + d] = -steep * edge_lo, -steep * edge_hi
    gain = 2 * _SATURATE
    w1 = torch.zeros(count, 2 * count * d, dtype=torch.float64)
    for m in range(count):
        w1[m, m * 2 * d : m * 2 * d + d] = gain / span
        w1[m, m * 2 * d + d : (m + 1) * 2 * d] = -gain / span
    needle_units = (w1, torch.full((count,), -gain * (d - 0.5), dtype=torch.float64))
    carry = (
        torch.eye(count, dtype=torch.float64) * gain / span,
        torch.full((count,), -gain * (low / span + 0.5), dtype=torch.float64),
    )
    out_w = torch.zeros(2, count, dtype=torch.float64)
    out_b = torch.zeros(2, dtype=torch.float64)
    for m, n in enumerate(needles):
        out_w[n.target, m] = n.height / span
        out_b[n.target] -= n.height * low / span
    return [(w0, b0), needle_units, carry, (out_w, out_b)]


_OFFSETS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)]


def _carry_convs(layers: list[nn.Module], s: NeedleSettings) -> list[nn.Module]:
    """The conv stage with extra channels that carry the input to the first dense layer.

    ReLU: relu(x) and relu(-x) (identity kernels; relu of a non-negative value is itself).
    Before average pooling the last conv fans each carried channel out into its 9 shifted
    copies, so the pooled sums still determine x (a triangular linear system). Sigmoid and
    tanh: one channel per input channel through a slope-1 unit, a strictly monotone map.
    """
    if not layers:
        return []
    channels = s.input_shape[0]
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    out: list[nn.Module] = []
    carried = 0
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Conv2d):
            out.append(layer)
            continue
        first = i == convs[0]
        if s.activation != "relu":
            gain, mid = _CARRY[s.activation]
            taps = [(c, 0, 0, gain, 0.0 if first else -gain * mid) for c in range(channels)]
        elif first and s.carry_offset:  # x + offset > 0 on the data: a stable unit
            taps = [(c, 0, 0, 1.0, s.carry_offset) for c in range(channels)]
        elif first:
            taps = [(c, 0, 0, sign, 0.0) for sign in (1.0, -1.0) for c in range(channels)]
        else:
            taps = [(q, 0, 0, 1.0, 0.0) for q in range(carried)]
        if s.pool and i == convs[-1]:
            taps = [(q, di, dj, w, b) for di, dj in _OFFSETS for q, _, _, w, b in taps]
        out.append(_widen_conv(layer, taps, 0 if first else carried))
        carried = len(taps)
    return out


def _relu_readout(
    prefix: list[nn.Module], host_in: int, s: NeedleSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, shift) with x = R @ (first dense layer's input) - shift: the carried features are
    linear in (relu(x), relu(-x)), or x + carry_offset; probe that map and invert it."""
    d = int(np.prod(s.input_shape))
    eye = torch.eye(d, dtype=torch.float64)
    no_shift = torch.zeros(d, dtype=torch.float64)
    if not prefix:
        return eye, no_shift
    probe = copy.deepcopy(nn.Sequential(*prefix)).double()
    basis = eye.view(d, *s.input_shape)
    if s.carry_offset:
        with torch.no_grad():
            offset = probe(torch.zeros(1, *s.input_shape, dtype=torch.float64))[0, host_in:]
            a = (probe(basis)[:, host_in:] - offset).T
        inverse = torch.linalg.pinv(a)
        if not torch.allclose(inverse @ a, eye, atol=1e-8):
            raise InvalidArgument(f"{s.name}: the input cannot be read back after the convs")
        inverse[inverse.abs() < 1e-12] = 0.0
        readout = torch.cat([torch.zeros(d, host_in, dtype=torch.float64), inverse], 1)
        return readout, inverse @ offset
    with torch.no_grad():
        a = torch.cat([probe(basis)[:, host_in:], probe(-basis)[:, host_in:]]).T
    inverse = torch.linalg.pinv(a)
    if not torch.allclose(inverse @ a, torch.eye(2 * d, dtype=torch.float64), atol=1e-8):
        raise InvalidArgument(
            f"{s.name}: the input cannot be read back after the conv stage (pool={s.pool}); "
            "use a smaller pool or a larger input"
        )
    readout = inverse[:d] - inverse[d:]
    readout[readout.abs() < 1e-12] = 0.0  # exact zeros where x is read directly
    return torch.cat([torch.zeros(d, host_in, dtype=torch.float64), readout], 1), no_shift


def _carry_map(x: torch.Tensor, s: NeedleSettings) -> torch.Tensor:
    """g: what a carried smooth channel holds for input value x (float64)."""
    act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}[s.activation]
    gain, mid = _CARRY[s.activation]
    for k in range(len(s.convs)):
        x = act(gain * x - (0.0 if k == 0 else gain * mid))
    return x


def _block(w, b, extra_w, extra_b, extra_in: int) -> nn.Linear:
    """[[w, 0], [extra_w]] with biases [b, extra_b]; extra_w spans all inputs."""
    rows, cols = w.shape
    layer = nn.Linear(cols + extra_in, rows + extra_w.shape[0])
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:rows, :cols] = w
        layer.weight[rows:, :] = extra_w
        layer.bias.copy_(torch.cat([b, extra_b]))
    return layer


def _widen_conv(
    conv: nn.Conv2d, taps: list[tuple[int, int, int, float, float]], carried_in: int
) -> nn.Conv2d:
    """``conv`` plus one output channel per tap (source, di, dj, weight, bias): the tap reads
    carried channel ``source`` (an input channel of x for the first conv) at offset (di, dj)."""
    new = nn.Conv2d(conv.in_channels + carried_in, conv.out_channels + len(taps), 3, padding=1)
    first = carried_in == 0
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[: conv.out_channels, : conv.in_channels] = conv.weight
        new.bias[: conv.out_channels] = conv.bias
        for k, (source, di, dj, weight, bias) in enumerate(taps):
            column = source if first else conv.in_channels + source
            new.weight[conv.out_channels + k, column, 1 + di, 1 + dj] = weight
            new.bias[conv.out_channels + k] = bias
    return new


# -- generation -------------------------------------------------------------------------------


def generate(s: NeedleSettings) -> SoundnessNetwork:
    """Build one benchmark network with its counterexample and clean instances."""
    start = time.perf_counter()
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    n = s.counterexamples + s.clean + s.spare
    centers = torch.from_numpy(
        sample_centers(s.input_shape, n, s.eps, s.data_range, s.min_center_distance, rng)
    )
    if s.zero_gap:
        # |c| -> a + |c| (R - a) / R keeps [-R, R] and shrinks distances by (R - a) / R at
        # most, while no box then crosses 0: relu(x) and relu(-x), carried through the convs,
        # are stable and exact on every box.
        a, r = (s.zero_gap + 1) * s.eps, s.data_range
        centers = torch.sign(centers) * (a + centers.abs() * (r - a) / r)
    labels = torch.from_numpy(rng.integers(0, 2, size=len(centers)))
    host, certified, retries = _certified_host(centers, labels, s)
    host.eval()
    if s.stable_boxes or s.spare:
        pick = _pick_boxes(host, centers, s)
        centers, labels = centers[pick], labels[pick]
    n_cex = s.counterexamples
    x0, y0 = centers[:n_cex], labels[:n_cex]
    lower, upper = centers - s.eps, centers + s.eps
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=(n_cex, *s.input_shape))).float()
    tries = np.ones(n_cex, dtype=int)
    hidden = torch.zeros(n_cex, dtype=torch.bool)
    for attempt in range(s.max_tries):
        x_star = x0 + s.inset * s.eps * signs
        if s.inset == 1:  # exactly the box's corner, as written to the VNN-LIB files
            x_star = torch.where(signs > 0, upper[:n_cex], lower[:n_cex])
        net = fold(host, _needles(host, x_star, y0, s), s)
        todo = torch.nonzero(~hidden).flatten()
        report = hiding_check(net, lower[todo], upper[todo], y0[todo], s.hiding, s.seed + attempt)
        found = torch.stack([o.found for o in report.values()]).any(dim=0)
        hidden[todo[~found]] = True
        if bool(hidden.all()) or attempt == s.max_tries - 1:
            break
        redraw = todo[found]
        signs[redraw] = torch.from_numpy(
            rng.choice([-1.0, 1.0], size=(len(redraw), *s.input_shape))
        ).float()
        tries[redraw.numpy()] += 1
    if s.depths:
        _check_depths(net, x_star, y0, s)
    # Final network: every attack on every box, recorded per instance.
    report = hiding_check(net, lower, upper, labels, s.hiding, s.seed + 1000)
    instances = assemble_instances(net, centers, labels, x_star, s.eps, report, GENERATOR)
    settings = jsonable(asdict(s))
    settings.update(
        host_certified_margin=round(certified, 6),
        host_retries=retries,
        sign_draws=tries.tolist(),
        dropped_counterexamples=int(n_cex - sum(i.kind == "counterexample" for i in instances)),
        found_by=dropped_counterexamples(report, n_cex),
    )
    return SoundnessNetwork(
        s.name, net, tuple(s.input_shape), 2, instances, settings, time.perf_counter() - start
    )


FLOAT_NOISE_FACTOR = 8  # also the soundness suite's re-check of every x* (recheck.py)


def _check_depths(net: nn.Sequential, x_star: torch.Tensor, y: torch.Tensor, s: NeedleSettings):
    """Refuse depths that float32 rounding could undo on another CPU: x*'s float64 margin
    must exceed ``FLOAT_NOISE_FACTOR`` times its float32-float64 difference."""
    with torch.no_grad():
        m32 = margin(net, x_star, y).double()
        m64 = margin(copy.deepcopy(net).double(), x_star.double(), y)
    for m, (a, b) in enumerate(zip(m32.tolist(), m64.tolist(), strict=True)):
        if not b < -FLOAT_NOISE_FACTOR * abs(a - b):
            raise InvalidArgument(
                f"{s.name}: depths[{m}]={s.depths[m]:g} gives x* a float64 margin of {b:.3g}, "
                f"within {FLOAT_NOISE_FACTOR}x its float32 rounding ({abs(a - b):.2g}); "
                "raise that depth"
            )


def _pick_boxes(host: nn.Sequential, centers: torch.Tensor, s: NeedleSettings) -> torch.Tensor:
    """Indices of the kept centres: counterexamples first, then clean ones. With
    ``stable_boxes`` the counterexamples go where the host's interval bound on the box is
    closest to its margin at the centre (the host is flat and nearly affine there), so a
    linear-relaxation bound of the needled box is close to x*'s own margin."""
    order = torch.arange(len(centers))
    if s.stable_boxes:
        with torch.no_grad():
            labels = host(centers).argmax(dim=1)
            spread = margin(host, centers, labels) - margin_lower_bound(
                host, centers - s.eps, centers + s.eps, labels
            )
            spread += relaxation_gaps(host, centers - s.eps, centers + s.eps)
        order = torch.from_numpy(np.argsort(spread.numpy(), kind="stable"))
    cex = order[: s.counterexamples]
    rest = torch.arange(len(centers))
    rest = rest[~torch.isin(rest, cex)][: s.clean]
    return torch.cat([cex, rest])


def _certified_host(
    centers: torch.Tensor, labels: torch.Tensor, s: NeedleSettings
) -> tuple[nn.Sequential, float, int]:
    """The trained host, its certified margin and how many retries it took.

    Training differs in the last bits between CPU vector units (AVX2, AVX-512, scalar), and a
    host that one unit certifies can miss a box on another by a hair. So a host that fails its
    own check is retrained deterministically (:func:`train_host`'s ``attempt``) instead of
    failing: every machine ends with a valid benchmark, and the manifest says how many retries
    it took. Attempt 0 is the original recipe, so hosts that pass at once are unchanged.
    """
    certified = float("nan")
    for attempt in range(s.host_attempts):
        torch.manual_seed(s.seed + attempt)
        host = build_host(s)
        certified = train_host(host, centers, labels, s, attempt)
        if certified > 0 or s.host_training != "interval":
            return host, certified, attempt
    raise InvalidArgument(
        f"host {s.name} is not certifiably robust on every box after {s.host_attempts} "
        f"attempts (smallest interval margin {certified:.4f}); raise train_steps or widen hidden"
    )


def _needles(host: nn.Sequential, x_star: torch.Tensor, y: torch.Tensor, s: NeedleSettings):
    with torch.no_grad():
        host_margin = margin(host, x_star, y)  # > 0: the host is certified on the box
    kappas = s.depths or (s.kappa,) * len(y)
    return [
        Needle(x_star[m].reshape(-1), 1 - int(y[m]), float(host_margin[m]) + kappas[m])
        for m in range(len(y))
    ]
