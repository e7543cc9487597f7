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

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vcheck.errors import InvalidArgument
from vcheck.soundness.attacks import HidingSettings, hiding_check, margin
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.intervals import margin_lower_bound

GENERATOR = "needle"


@dataclass(frozen=True)
class NeedleSettings:
    """Everything that determines a generated network; stored in its manifest.

    ``convs`` empty gives an MLP on ``input_shape`` (d,), otherwise a CNN on (C, H, W) with
    3x3 stride-1 convolutions. ``hidden`` are the widths of the dense layers (at least two).
    """

    name: str = "mlp"
    input_shape: tuple[int, ...] = (10,)
    convs: tuple[int, ...] = ()
    hidden: tuple[int, ...] = (64, 64, 64, 64)
    eps: float = 0.02
    counterexamples: int = 10
    clean: int = 10
    data_range: float = 0.1
    min_center_distance: float = 3.0  # in eps, L-inf between any two centres (spec: > 2)
    delta: float = 0.05
    inset: float = 0.99
    kappa: float = 0.05  # logit margin by which x* is misclassified
    train_steps: int = 2000
    train_eps_factor: float = 1.1  # train the host on slightly larger boxes for slack
    lr: float = 5e-3
    max_tries: int = 4  # re-draws of a sign vector whose x* an attack found
    seed: int = 0
    hiding: HidingSettings = field(default_factory=HidingSettings)

    def __post_init__(self) -> None:
        if len(self.hidden) < 2:
            raise InvalidArgument(f"hidden={self.hidden}: the needle needs two dense layers")
        if bool(self.convs) != (len(self.input_shape) == 3):
            raise InvalidArgument(
                f"input_shape={self.input_shape} with convs={self.convs}: use (d,) for an MLP "
                "and (C, H, W) with at least one conv for a CNN"
            )
        if not 0 < self.inset < 1 or self.min_center_distance < 2:
            raise InvalidArgument("inset must be in (0, 1) and min_center_distance at least 2")


# -- host -------------------------------------------------------------------------------------


def build_host(s: NeedleSettings) -> nn.Sequential:
    layers: list[nn.Module] = []
    if s.convs:
        channels, height, width = s.input_shape
        for out in s.convs:
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            channels = out
        layers.append(nn.Flatten())
        features = channels * height * width
    else:
        features = s.input_shape[0]
    for width_ in s.hidden:
        layers += [nn.Linear(features, width_), nn.ReLU()]
        features = width_
    layers.append(nn.Linear(features, 2))
    return nn.Sequential(*layers)


def train_host(
    host: nn.Sequential, centers: torch.Tensor, labels: torch.Tensor, s: NeedleSettings
) -> float:
    """Certified (interval-bound) training on every box; returns the smallest certified margin.

    IBP-style initialisation (weights ~ N(0, 2*pi / fan_in^2), zero bias) keeps the bounds
    of deep nets from exploding at the start; a hinge on the certified margin, with the
    radius ramped up over the first half, drives every box to margin 1.
    """
    for layer in host:
        if isinstance(layer, nn.Linear | nn.Conv2d):
            fan_in = layer.weight[0].numel()
            nn.init.normal_(layer.weight, std=(2 * np.pi) ** 0.5 / fan_in)
            nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(host.parameters(), lr=s.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.train_steps)
    for step in range(s.train_steps):
        eps = s.eps * s.train_eps_factor * min(1.0, step / (0.5 * s.train_steps))
        certified = margin_lower_bound(host, centers - eps, centers + eps, labels)
        loss = F.relu(1.0 - certified).mean()
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
    """A plain network equal to host + sum_m (K_m / delta) h_m(x) e_{target_m}."""
    d = int(np.prod(s.input_shape))
    count = len(needles)
    layers = list(host)
    first_dense = next(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
    out: list[nn.Module] = []
    # Convolutions carry relu(x) and relu(-x) through as extra channels (identity kernels).
    channels = s.input_shape[0] if s.convs else 0
    for layer in layers[:first_dense]:
        if isinstance(layer, nn.Conv2d):
            out.append(_widen_conv(layer, channels, first=not out))
        else:
            out.append(layer)
    # x as a linear read-out of the first dense layer's input.
    host_in = layers[first_dense].in_features
    if s.convs:
        readout = torch.zeros(d, host_in + 2 * d)
        idx = torch.arange(d)
        readout[idx, host_in + idx] = 1.0  # relu(x) channels follow the host's channels...
        readout[idx, host_in + d + idx] = -1.0  # ...then relu(-x); channel-major like x
    else:
        readout = torch.eye(d)
    dense = [m for m in layers[first_dense:] if isinstance(m, nn.Linear)]
    x_star = torch.stack([n.x_star for n in needles])  # (M, d)
    for k, layer in enumerate(dense):
        w, b = layer.weight.detach(), layer.bias.detach()
        if k == 0:  # |x - x*| halves: rows readout and -readout, biases -x* and +x*
            extra_w = torch.cat([readout.repeat(count, 1), -readout.repeat(count, 1)])
            extra_b = torch.cat([-x_star.reshape(-1), x_star.reshape(-1)])
            new = _block(w, b, extra_w, extra_b, extra_in=readout.shape[1] - w.shape[1])
        elif k == 1:  # h_m = relu(delta - sum |x - x*_m| / eps)
            extra_w = torch.zeros(count, w.shape[1] + 2 * d * count)
            for m in range(count):
                extra_w[m, w.shape[1] + m * d : w.shape[1] + (m + 1) * d] = -1 / s.eps
                extra_w[m, w.shape[1] + (count + m) * d : w.shape[1] + (count + m + 1) * d] = (
                    -1 / s.eps
                )
            extra_b = torch.full((count,), s.delta)
            new = _block(w, b, extra_w, extra_b, extra_in=2 * d * count)
        elif k < len(dense) - 1:  # identity pass-through of h (non-negative)
            extra_w = torch.cat([torch.zeros(count, w.shape[1]), torch.eye(count)], dim=1)
            new = _block(w, b, extra_w, torch.zeros(count), extra_in=count)
        else:  # output: + K_m / delta * h_m on the target logit
            new = nn.Linear(w.shape[1] + count, w.shape[0])
            with torch.no_grad():
                new.weight.zero_()
                new.weight[:, : w.shape[1]] = w
                new.bias.copy_(b)
                for m, needle in enumerate(needles):
                    new.weight[needle.target, w.shape[1] + m] = needle.height / s.delta
        out.append(new)
        if k < len(dense) - 1:
            out.append(nn.ReLU())
    folded = nn.Sequential(*out).eval()
    folded.requires_grad_(False)  # a fixed artefact; attacks differentiate inputs only
    return folded


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


def _widen_conv(conv: nn.Conv2d, in_channels: int, first: bool) -> nn.Conv2d:
    """Add 2C channels: relu(x), relu(-x) (first conv) or their identity pass-through."""
    c = in_channels
    new = nn.Conv2d(
        conv.in_channels + (0 if first else 2 * c), conv.out_channels + 2 * c, 3, padding=1
    )
    with torch.no_grad():
        new.weight.zero_()
        new.bias.zero_()
        new.weight[: conv.out_channels, : conv.in_channels] = conv.weight
        new.bias[: conv.out_channels] = conv.bias
        for ch in range(c):
            if first:
                new.weight[conv.out_channels + ch, ch, 1, 1] = 1.0
                new.weight[conv.out_channels + c + ch, ch, 1, 1] = -1.0
            else:
                new.weight[conv.out_channels + ch, conv.in_channels + ch, 1, 1] = 1.0
                new.weight[conv.out_channels + c + ch, conv.in_channels + c + ch, 1, 1] = 1.0
    return new


# -- generation -------------------------------------------------------------------------------


def _centers(s: NeedleSettings, rng: np.random.Generator) -> np.ndarray:
    n = s.counterexamples + s.clean
    gap = s.min_center_distance * s.eps
    out: list[np.ndarray] = []
    for _ in range(200_000):
        c = rng.uniform(-s.data_range, s.data_range, size=s.input_shape).astype(np.float32)
        if all(np.abs(c - o).max() > gap for o in out):
            out.append(c)
            if len(out) == n:
                return np.stack(out)
    raise InvalidArgument(
        f"could not place {n} centres {s.min_center_distance} eps apart in "
        f"[-{s.data_range}, {s.data_range}]^{s.input_shape}; lower eps or the instance count"
    )


def generate(s: NeedleSettings) -> SoundnessNetwork:
    """Build one benchmark network with its counterexample and clean instances."""
    start = time.perf_counter()
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    centers = torch.from_numpy(_centers(s, rng))
    labels = torch.from_numpy(rng.integers(0, 2, size=len(centers)))
    host = build_host(s)
    certified = train_host(host, centers, labels, s)
    if certified <= 0:
        raise InvalidArgument(
            f"host {s.name} is not certifiably robust on every box (smallest interval margin "
            f"{certified:.4f}); raise train_steps or widen hidden"
        )
    host.eval()
    n_cex = s.counterexamples
    x0, y0 = centers[:n_cex], labels[:n_cex]
    lower, upper = centers - s.eps, centers + s.eps
    signs = torch.from_numpy(rng.choice([-1.0, 1.0], size=(n_cex, *s.input_shape))).float()
    tries = np.ones(n_cex, dtype=int)
    hidden = torch.zeros(n_cex, dtype=torch.bool)
    for attempt in range(s.max_tries):
        x_star = x0 + s.inset * s.eps * signs
        needles = _needles(host, x_star, y0, s)
        net = fold(host, needles, s)
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
    # Final network: every attack on every box, recorded per instance.
    report = hiding_check(net, lower, upper, labels, s.hiding, s.seed + 1000)
    certified_boxes = margin_lower_bound(net, lower, upper, labels) > 0
    instances = []
    for i in range(len(centers)):
        found_by = tuple(name for name, o in report.items() if bool(o.found[i]))
        hidden_from = tuple(name for name, o in report.items() if not bool(o.found[i]))
        common = dict(
            center=centers[i].numpy(),
            eps=s.eps,
            label=int(labels[i]),
            lower=lower[i].numpy(),
            upper=upper[i].numpy(),
            hidden_from=hidden_from,
            found_by=found_by,
            generator=GENERATOR,
        )
        if i < n_cex:
            if found_by:  # SoundnessBench keeps only counterexamples every attack missed
                continue
            instances.append(
                Instance(
                    id=f"cex_{i:02d}",
                    kind="counterexample",
                    target=1 - int(labels[i]),
                    x_star=x_star[i].numpy(),
                    ground_truth="sat",
                    ground_truth_method="planted x*",
                    **common,
                )
            )
        else:
            truth, method = "unknown", None
            if found_by:
                truth, method = "sat", f"attack: {found_by[0]}"
            elif bool(certified_boxes[i]):
                truth, method = "unsat", "interval bound propagation (vcheck.soundness.intervals)"
            instances.append(
                Instance(
                    id=f"clean_{i - n_cex:02d}",
                    kind="clean",
                    ground_truth=truth,
                    ground_truth_method=method,
                    **common,
                )
            )
    settings = _jsonable(asdict(s))
    settings.update(
        host_certified_margin=round(certified, 6),
        sign_draws=tries.tolist(),
        dropped_counterexamples=int(n_cex - sum(i.kind == "counterexample" for i in instances)),
    )
    return SoundnessNetwork(
        s.name, net, tuple(s.input_shape), 2, instances, settings, time.perf_counter() - start
    )


def _needles(host: nn.Sequential, x_star: torch.Tensor, y: torch.Tensor, s: NeedleSettings):
    with torch.no_grad():
        host_margin = margin(host, x_star, y)  # > 0: the host is certified on the box
    return [
        Needle(x_star[m].reshape(-1), 1 - int(y[m]), float(host_margin[m]) + s.kappa)
        for m in range(len(y))
    ]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj
