"""auto_LiRPA's IBP, CROWN and alpha-CROWN as incomplete verifiers of soundness instances.

An incomplete verifier proves or gives up: "unsat" when every lower bound of the margins
``f_label - f_j`` (j over the targets, by default every other class) over the instance's box is
strictly positive, otherwise "unknown" (it never answers "sat"). Strictly: a bound of exactly 0
allows a tie, and a tie is a violation of the VNN-LIB property ``Y_j >= Y_label``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

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
    timed_verdict,
)
from vcheck.verify.bounds import METHODS, Method, UnsupportedNetworkError, margin_lower_bounds
from vcheck.verify.external import Result

__all__ = ["LirpaVerifier", "num_classes"]


class LirpaVerifier(Verifier):
    """One auto_LiRPA bound method as a verifier.

    Args:
        method: ``"IBP"``, ``"CROWN"`` or ``"alpha-CROWN"``.
        alpha_iterations: alpha-CROWN's optimisation steps (ignored by the other methods).
        timeout: seconds; a soft limit, checked once the bounds are computed (auto_LiRPA
            cannot be interrupted): past it the verdict is "timeout", unless the bounds proved
            the property, which stays "unsat" with the time noted (a late unsound proof must
            still fail the suite).
    """

    supports_targets = True

    def __init__(
        self, method: Method = "CROWN", *, alpha_iterations: int = 20, timeout: float | None = None
    ) -> None:
        if method not in METHODS:
            raise InvalidArgument(f"method={method!r}; expected one of {', '.join(METHODS)}")
        if not (isinstance(alpha_iterations, int) and alpha_iterations >= 1):
            raise InvalidArgument(f"alpha_iterations={alpha_iterations!r}; expected an int >= 1")
        self.method = method
        self.alpha_iterations = alpha_iterations
        self.timeout = check_timeout(timeout)

    def verify(
        self,
        net: nn.Module | SoundnessNetwork,
        instance: Instance,
        *,
        targets: Sequence[int] | None = None,
    ) -> Result:
        """Bound the instance's margins over its box; "unsat" only if all are > 0."""
        start = time.perf_counter()
        module = as_module(net)
        lower, upper = instance_box(instance)
        try:
            bounds = self.margin_bounds(module, lower, upper, instance.label, targets)
        except UnsupportedNetworkError as exc:
            return Result("error", seconds=elapsed(start), reason=str(exc), refused=True)
        seconds = elapsed(start)
        worst = float(bounds.min())
        proved = bool(self.holds(bounds).all())
        return timed_verdict(
            proved, seconds, self.timeout, f"min margin lower bound {worst:.6g}", bound=worst
        )

    def margin_bounds(
        self,
        net: nn.Module,
        lower: Tensor,
        upper: Tensor,
        label: int | Tensor,
        targets: Sequence[int] | None = None,
    ) -> Tensor:
        """Lower bounds of ``f_label - f_j`` per box and target, shape ``(batch, targets)``."""
        return margin_lower_bounds(
            net,
            lower,
            upper,
            label,
            self.method,
            targets=targets,
            alpha_iterations=self.alpha_iterations,
            stop_when_proved=True,  # same verdict, fewer alpha-CROWN iterations
        )

    def holds(self, bounds: Tensor) -> Tensor:
        """Which margins are proved positive: strictly, since a bound of 0 allows a tie."""
        return bounds > 0

    def verify_box(
        self,
        net: nn.Module,
        lower: Tensor,
        upper: Tensor,
        label: int | Tensor,
        targets: Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``(verified, bounds)`` for a batch of boxes: verified is (batch,) bool, bounds is
        (batch, targets). Branch and bound calls this on its sub-boxes."""
        bounds = self.margin_bounds(net, lower, upper, label, targets)
        return self.holds(bounds).all(dim=1), bounds


def num_classes(net: nn.Module, lower: Tensor) -> int:
    """The number of logits ``net`` gives for one input shaped like ``lower[:1]``."""
    with eval_mode(net), torch.no_grad():
        return int(net(lower[:1]).reshape(1, -1).shape[1])
