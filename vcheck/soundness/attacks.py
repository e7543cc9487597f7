"""Attacks that try to falsify robustness properties: how hidden is each counterexample?

All attacks take a batch of boxes at once (``lower``/``upper`` shaped (I, ...), ``label``
(I,)) and run ``restarts`` copies of each, so a whole benchmark network is attacked in one
batched loop. Each returns a boolean "found" per box and a witness per box (or NaN).

The loss is SoundnessBench's margin, max_{j != y} f_j - f_y, not cross-entropy: a
counterexample is any point where it reaches 0, however confident the network is elsewhere.
foolbox's PGD optimises cross-entropy with a fixed criterion, hence this small module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# SoundnessBench's strong check: (step / eps, steps); steps = 0 is one random point.
STRONG_SERIES: tuple[tuple[float, int], ...] = (
    (0.25, 0),
    (0.25, 100),
    (0.02, 100),
    (0.02, 250),
    (0.02, 500),
    (0.01, 1000),
    (0.01, 3000),
    (0.01, 5000),
)


@dataclass(frozen=True)
class AttackOutcome:
    found: torch.Tensor  # (I,) bool
    witness: torch.Tensor  # (I, ...) a point with margin <= 0 where found, NaN elsewhere


def margin(net: nn.Module, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """f_y - max_{j != y} f_j per row; <= 0 means x is a counterexample."""
    logits = net(x)
    y = logits.gather(1, label.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, label.view(-1, 1), float("-inf"))
    return y - others.max(dim=1).values


def _expand(t: torch.Tensor, restarts: int) -> torch.Tensor:
    return t.repeat_interleave(restarts, dim=0)


def _collect(net, x, label, restarts, n_boxes, found, witness) -> None:
    with torch.no_grad():
        hit = (margin(net, x, label) <= 0).view(n_boxes, restarts)
    for i in torch.nonzero(hit.any(dim=1) & ~found).flatten().tolist():
        j = int(torch.nonzero(hit[i]).flatten()[0])
        witness[i] = x[i * restarts + j]
        found[i] = True


def _run(
    step_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    init: Callable[[torch.Generator], torch.Tensor],
    net: nn.Module,
    lower: torch.Tensor,
    label: torch.Tensor,
    restarts: int,
    steps: int,
    seed: int,
) -> AttackOutcome:
    """Start ``restarts`` points per box with ``init``, then take ``steps`` of ``step_fn``,
    keeping the first counterexample found per box."""
    n_boxes, shape = len(label), tuple(lower.shape[1:])
    gen = torch.Generator().manual_seed(seed)
    found = torch.zeros(n_boxes, dtype=torch.bool)
    witness = torch.full((n_boxes, *shape), float("nan"))
    labels = _expand(label, restarts)
    x = init(gen)
    _collect(net, x, labels, restarts, n_boxes, found, witness)
    for _ in range(steps):
        if bool(found.all()):
            break
        x = step_fn(x, labels)
        _collect(net, x, labels, restarts, n_boxes, found, witness)
    return AttackOutcome(found, witness)


def _uniform(lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(lo.shape, generator=gen)


def pgd(
    net: nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    label: torch.Tensor,
    *,
    rel_step: float,
    steps: int,
    restarts: int,
    seed: int,
) -> AttackOutcome:
    """Sign-gradient ascent on the margin loss from uniform random starts in the box."""
    lo, hi = _expand(lower, restarts), _expand(upper, restarts)
    alpha = rel_step * (hi - lo) / 2

    def step(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        loss = -margin(net, x, labels).sum()
        (grad,) = torch.autograd.grad(loss, x)
        return torch.max(torch.min(x.detach() + alpha * grad.sign(), hi), lo)

    return _run(step, lambda g: _uniform(lo, hi, g), net, lower, label, restarts, steps, seed)


def pgd_deltas(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int,
    restarts: int,
    rel_step: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """The strongest delta in the eps-box per point: sign steps of ``rel_step`` * eps on the
    margin loss sum_{j != y} (f_j - f_y) from ``restarts`` random starts; best delta kept."""
    n, shape = len(x), x.shape[1:]
    xs, ys = x.repeat_interleave(restarts, 0), y.repeat_interleave(restarts, 0)
    delta = (torch.rand(xs.shape, generator=gen).to(x.device) * 2 - 1) * eps
    best = torch.full((n * restarts,), -float("inf"), device=x.device)
    best_delta = delta.clone()
    alpha = rel_step * eps
    for step in range(steps + 1):
        delta.requires_grad_(True)
        logits = net(xs + delta)
        loss = (logits - logits.gather(1, ys.view(-1, 1))).sum(dim=1)
        with torch.no_grad():
            better = loss > best
            best = torch.where(better, loss, best)
            best_delta[better] = delta[better]
        if step == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
    pick = best.view(n, restarts).argmax(dim=1) + torch.arange(n, device=x.device) * restarts
    return best_delta[pick].detach().view(n, *shape)


def apgd(
    net: nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    label: torch.Tensor,
    *,
    steps: int,
    restarts: int,
    seed: int,
) -> AttackOutcome:
    """APGD-style: momentum 0.75 and a step size that halves when progress stalls.

    A compact take on Croce & Hein's schedule (checkpoints every ~20% of the budget), enough
    to escape the plateaus that plain sign-PGD sits on.
    """
    lo, hi = _expand(lower, restarts), _expand(upper, restarts)
    radius = (hi - lo) / 2
    state = {"eta": 2 * radius, "prev": None, "best": None, "since": 0}
    period = max(steps // 5, 1)

    def step(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        m = margin(net, x, labels)
        (grad,) = torch.autograd.grad(-m.sum(), x)
        z = torch.max(torch.min(x.detach() + state["eta"] * grad.sign(), hi), lo)
        prev = state["prev"] if state["prev"] is not None else x.detach()
        new = torch.max(
            torch.min(x.detach() + 0.75 * (z - x.detach()) + 0.25 * (x.detach() - prev), hi), lo
        )
        state["prev"] = x.detach()
        best = m.detach() if state["best"] is None else torch.minimum(state["best"], m.detach())
        improved = state["best"] is None or bool((best < state["best"] - 1e-12).any())
        state["best"] = best
        state["since"] += 1
        if state["since"] >= period and not improved:
            state["eta"] = state["eta"] / 2
            state["since"] = 0
        return new

    return _run(step, lambda g: _uniform(lo, hi, g), net, lower, label, restarts, steps, seed)


def random_vertices(
    net: nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    label: torch.Tensor,
    *,
    n: int,
    seed: int,
) -> AttackOutcome:
    """Evaluate ``n`` random corners of each box (where ReLU nets often attain extremes)."""
    lo, hi = _expand(lower, n), _expand(upper, n)

    def init(gen: torch.Generator) -> torch.Tensor:
        return torch.where(torch.rand(lo.shape, generator=gen) < 0.5, lo, hi)

    return _run(None, init, net, lower, label, n, 0, seed)


def random_points(
    net: nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    label: torch.Tensor,
    *,
    n: int,
    seed: int,
) -> AttackOutcome:
    """Evaluate ``n`` uniform random points of each box."""
    lo, hi = _expand(lower, n), _expand(upper, n)
    return _run(None, lambda g: _uniform(lo, hi, g), net, lower, label, n, 0, seed)


@dataclass(frozen=True)
class HidingSettings:
    """How hard the hiding check tries; recorded with every generated network."""

    restarts: int = 20
    series: tuple[tuple[float, int], ...] = STRONG_SERIES
    apgd_steps: int = 500
    vertices: int = 2000
    points: int = 5000


def hiding_check(
    net: nn.Module,
    lower: torch.Tensor,
    upper: torch.Tensor,
    label: torch.Tensor,
    settings: HidingSettings,
    seed: int,
) -> dict[str, AttackOutcome]:
    """Run every attack of ``settings`` on every box; name -> outcome."""
    net.eval()
    out: dict[str, AttackOutcome] = {}
    for k, (rel, steps) in enumerate(settings.series):
        out[f"pgd(step={rel}eps,steps={steps},restarts={settings.restarts})"] = pgd(
            net,
            lower,
            upper,
            label,
            rel_step=rel,
            steps=steps,
            restarts=settings.restarts,
            seed=seed + k,
        )
    out[f"apgd(steps={settings.apgd_steps},restarts={settings.restarts})"] = apgd(
        net,
        lower,
        upper,
        label,
        steps=settings.apgd_steps,
        restarts=settings.restarts,
        seed=seed + 100,
    )
    out[f"vertices(n={settings.vertices})"] = random_vertices(
        net, lower, upper, label, n=settings.vertices, seed=seed + 200
    )
    out[f"random_points(n={settings.points})"] = random_points(
        net, lower, upper, label, n=settings.points, seed=seed + 300
    )
    return out
