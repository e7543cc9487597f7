"""A small input-split branch and bound: complete on the low-dimensional soundness networks.

The instance's box is split into sub-boxes until every one is proved robust by a sound bound
method ("unsat"), a concrete point of some sub-box is misclassified ("sat", with that point),
the domain budget runs out ("unknown") or the time does ("timeout"). Splitting the input, not
ReLUs, is what works for d = 10: each halving tightens every bound method, and the bound
methods need no branching constraints.

Each round takes the ``batch_size`` pending sub-boxes with the worst parent bound (worst
first finds a counterexample sooner; proving needs every sub-box anyway), evaluates the
network at their centres and at one gradient-guided vertex each, then bounds them: interval
bounds for the whole batch at once (cheap), and the chosen method (CROWN by default) for the
sub-boxes IBP did not prove, keeping the larger of the two lower bounds (both are sound, so is
their maximum). Unproved sub-boxes are split in two along one input dimension.

The domain-dropping mutant (:class:`vcheck.verify.mutants.DropDomains`) overrides
:meth:`BranchAndBound.select_domains`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vcheck.errors import InvalidArgument
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.verify.base import (
    Verifier,
    as_module,
    check_timeout,
    elapsed,
    eval_mode,
    instance_box,
)
from vcheck.verify.bounds import METHODS, Method, UnsupportedNetworkError, margin_lower_bounds
from vcheck.verify.external import Result

__all__ = ["BranchAndBound", "Domain"]

Split = Literal["widest", "sensitivity"]


@dataclass(frozen=True, eq=False)
class Domain:
    """A pending sub-box and the worst margin lower bound of the box it was split from."""

    lower: Tensor  # (*input_shape)
    upper: Tensor
    bound: float = float("-inf")
    depth: int = 0


class BranchAndBound(Verifier):
    """Input-split branch and bound over a bound method of :mod:`vcheck.verify.bounds`.

    Args:
        method: the bound method for sub-boxes interval bounds do not prove ("IBP" uses
            interval bounds only).
        max_domains: how many sub-boxes may be bounded in all before giving up with
            "unknown" (the root counts as one).
        batch_size: sub-boxes bounded per round.
        split: ``"widest"`` halves the widest input dimension; ``"sensitivity"`` the one with
            the largest width times the first affine layer's total absolute weight on that
            input (a gradient-free estimate of how much the input's width loosens the first
            layer's bounds; widest for networks not starting with a Linear or Conv2d).
        intersect_ibp: bound every sub-box with interval bounds too and keep the better.
        timeout: seconds, checked between rounds.
        alpha_iterations: for ``method="alpha-CROWN"``.
    """

    supports_targets = True

    def __init__(
        self,
        method: Method = "CROWN",
        *,
        max_domains: int = 5000,
        batch_size: int = 32,
        split: Split = "widest",
        intersect_ibp: bool = True,
        timeout: float | None = None,
        alpha_iterations: int = 20,
    ) -> None:
        if method not in METHODS:
            raise InvalidArgument(f"method={method!r}; expected one of {', '.join(METHODS)}")
        for name, value in (
            ("max_domains", max_domains),
            ("batch_size", batch_size),
            ("alpha_iterations", alpha_iterations),
        ):
            if not (isinstance(value, int) and value >= 1):
                raise InvalidArgument(f"{name}={value!r}; expected an int >= 1")
        if split not in ("widest", "sensitivity"):
            raise InvalidArgument(f"split={split!r}; expected 'widest' or 'sensitivity'")
        self.method = method
        self.max_domains = max_domains
        self.batch_size = batch_size
        self.split = split
        self.intersect_ibp = bool(intersect_ibp)
        self.timeout = check_timeout(timeout)
        self.alpha_iterations = alpha_iterations

    def select_domains(self, pending: list[Domain]) -> list[Domain]:
        """The pending sub-boxes that stay in the search; all of them (a sound search drops
        none). Called before every round; subclasses may override it (the mutant does)."""
        return pending

    def verify(
        self,
        net: nn.Module | SoundnessNetwork,
        instance: Instance,
        *,
        targets: Sequence[int] | None = None,
    ) -> Result:
        """Search the instance's box; see the module docstring for the verdicts."""
        start = time.perf_counter()
        module = as_module(net)
        lower, upper = instance_box(instance)
        try:
            with eval_mode(module):
                return self._search(module, lower[0], upper[0], instance.label, targets, start)
        except UnsupportedNetworkError as exc:
            return Result("error", seconds=elapsed(start), reason=str(exc), refused=True)

    def _search(
        self,
        net: nn.Module,
        lower: Tensor,
        upper: Tensor,
        label: int,
        targets: Sequence[int] | None,
        start: float,
    ) -> Result:
        with torch.no_grad():
            n_classes = int(net(lower[None]).reshape(1, -1).shape[1])
        chosen = [j for j in range(n_classes) if j != label] if targets is None else list(targets)
        weights = self._split_weights(net, lower) if self.split == "sensitivity" else None
        checker = _PointChecker(net, label, chosen)
        pending = [Domain(lower, upper)]
        bounded = rounds = 0
        worst = float("inf")
        while True:
            pending = self.select_domains(pending)
            if not pending:
                return Result(
                    "unsat",
                    seconds=elapsed(start),
                    raw=f"proved {bounded} sub-boxes in {rounds} rounds",
                )
            if self.timeout is not None and elapsed(start) > self.timeout:
                return Result(
                    "timeout",
                    seconds=elapsed(start),
                    reason=f"{len(pending)} sub-boxes pending after {bounded} bounded "
                    f"(timeout {self.timeout:g} s)",
                )
            if bounded >= self.max_domains:
                return Result(
                    "unknown",
                    seconds=elapsed(start),
                    raw=f"domain limit {self.max_domains} reached with {len(pending)} "
                    f"sub-boxes pending; lowest margin bound seen {worst:.4g}",
                )
            pending.sort(key=lambda d: d.bound)
            take = min(self.batch_size, self.max_domains - bounded)
            batch, pending = pending[:take], pending[take:]
            lo = torch.stack([d.lower for d in batch])
            hi = torch.stack([d.upper for d in batch])
            point = checker.find(lo, hi)
            if point is not None:
                x, y = point
                return Result(
                    "sat",
                    x=x.reshape(-1).double().numpy(),
                    y=y.numpy(),
                    seconds=elapsed(start),
                    raw=f"counterexample after {bounded} sub-boxes bounded",
                )
            verified, bounds = self._bound(net, lo, hi, label, targets)
            bounded += len(batch)
            rounds += 1
            worst_row = bounds.min(dim=1).values
            for i in torch.nonzero(~verified).flatten().tolist():
                worst = min(worst, float(worst_row[i]))
                pending += self._split(batch[i], float(worst_row[i]), weights)

    def _bound(
        self,
        net: nn.Module,
        lo: Tensor,
        hi: Tensor,
        label: int,
        targets: Sequence[int] | None,
    ) -> tuple[Tensor, Tensor]:
        """(verified, margin lower bounds) of a batch of sub-boxes."""
        if self.method == "IBP" or self.intersect_ibp:
            bounds = margin_lower_bounds(net, lo, hi, label, "IBP", targets=targets)
        else:
            bounds = torch.full((len(lo), 1), float("-inf"))
        if self.method != "IBP":
            todo = torch.nonzero(~(bounds > 0).all(dim=1)).flatten()
            if len(todo):
                tight = margin_lower_bounds(
                    net,
                    lo[todo],
                    hi[todo],
                    label,
                    self.method,
                    targets=targets,
                    alpha_iterations=self.alpha_iterations,
                )
                if bounds.shape[1] != tight.shape[1]:  # the -inf placeholder
                    bounds = bounds.expand(-1, tight.shape[1]).clone()
                bounds[todo] = torch.maximum(bounds[todo], tight)
        return (bounds > 0).all(dim=1), bounds

    def _split(self, domain: Domain, bound: float, weights: Tensor | None) -> list[Domain]:
        width = domain.upper - domain.lower
        score = width if weights is None else width * weights
        k = int(torch.argmax(score.reshape(-1)))
        mid = (domain.lower.reshape(-1)[k] + domain.upper.reshape(-1)[k]) / 2
        left_hi = domain.upper.clone()
        left_hi.reshape(-1)[k] = mid
        right_lo = domain.lower.clone()
        right_lo.reshape(-1)[k] = mid
        return [
            Domain(domain.lower, left_hi, bound, domain.depth + 1),
            Domain(right_lo, domain.upper, bound, domain.depth + 1),
        ]

    @staticmethod
    def _split_weights(net: nn.Module, lower: Tensor) -> Tensor | None:
        """Per input, the first affine layer's total absolute weight on it (|W|^T 1)."""
        first = next((m for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)), None)
        if first is None:
            return None
        x = torch.zeros_like(lower)[None].requires_grad_(True)
        with torch.enable_grad():
            if isinstance(first, nn.Linear):
                if x[0].numel() != first.in_features:
                    return None
                out = nn.functional.linear(x.reshape(1, -1), first.weight.detach().abs())
            else:
                if x.dim() != 4:
                    return None
                out = nn.functional.conv2d(
                    x,
                    first.weight.detach().abs(),
                    None,
                    first.stride,
                    first.padding,
                    first.dilation,
                    first.groups,
                )
            (grad,) = torch.autograd.grad(out.sum(), x)
        return grad[0] + 1e-12  # no zero weight: a dimension the layer ignores still splits


class _PointChecker:
    """Concrete points of sub-boxes: centres and the vertex the margin's gradient points to.

    A point counts only if its margin is <= 0 in float64 as well (``validate_counterexample``
    evaluates in float64), so a float32 rounding never makes a "sat".
    """

    def __init__(self, net: nn.Module, label: int, targets: list[int]) -> None:
        self.net = net
        self.label = label
        self.targets = targets
        self._net64: nn.Module | None = None

    def margins(self, net: nn.Module, x: Tensor) -> Tensor:
        logits = net(x).reshape(len(x), -1)
        return logits[:, self.label] - logits[:, self.targets].max(dim=1).values

    def find(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor] | None:
        centre = ((lo + hi) / 2).clamp(lo, hi)
        x = centre.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.margins(self.net, x).sum(), x)
        vertex = torch.where(grad > 0, lo, hi)  # minimises the margin's linearisation
        points = torch.cat([centre, vertex])
        with torch.no_grad():
            hits = torch.nonzero(self.margins(self.net, points) <= 0).flatten()
        for i in hits.tolist():
            if self._net64 is None:
                self._net64 = copy.deepcopy(self.net).double().eval()
            x64 = points[i : i + 1].double()
            with torch.no_grad():
                if float(self.margins(self._net64, x64)[0]) <= 0:
                    return points[i].detach(), self._net64(x64).reshape(-1).detach()
        return None
