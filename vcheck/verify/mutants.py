"""Synthetic verifier bugs (SoundnessBench's mutators): the suite must catch every one.

Each mutant is a :class:`~vcheck.verify.base.Verifier` built around a sound one, with one
deliberate soundness bug, and a repr naming the bug and its settings:

- :class:`ShrinkBox`: verifies a box shrunk toward its centre instead of the instance's box.
- :class:`ShrinkIntermediate`: shrinks the bounds of every ReLU's input toward the values at
  the box's centre (the "clean activations") before bounding the output.
- :class:`DropDomains`: a branch and bound that drops a fraction of its pending sub-boxes
  whenever at least ``min_pending`` are pending, then reports "unsat" once the rest are proved.
- :class:`NonStrictComparison`: accepts margin lower bounds ``>= 0`` instead of ``> 0``; a
  bound of exactly 0 allows a tie, which violates ``Y_j >= Y_label``.
- :class:`DropTarget`: leaves one target class out of the specification.
- :class:`NumericalSlack`: accepts margin lower bounds ``> -slack`` (a tolerance meant for
  float rounding, applied to the verdict): a counterexample shallower than the slack is
  "proved" wherever the bound is tight.

A mutant is caught when it answers "unsat" on an instance with a planted counterexample.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcheck.errors import InvalidArgument
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.verify import bounds as _bounds
from vcheck.verify._lirpa_compat import import_auto_lirpa
from vcheck.verify.bab import BranchAndBound, Domain
from vcheck.verify.base import (
    Verifier,
    as_module,
    check_timeout,
    default_targets,
    elapsed,
    instance_box,
    timed_verdict,
)
from vcheck.verify.bounds import METHODS, Method, UnsupportedNetworkError
from vcheck.verify.external import Result
from vcheck.verify.lirpa import LirpaVerifier, num_classes

__all__ = [
    "MUTANTS",
    "DropDomains",
    "DropTarget",
    "NonStrictComparison",
    "NumericalSlack",
    "ShrinkBox",
    "ShrinkIntermediate",
]


def _check_factor(factor: float) -> float:
    if not (isinstance(factor, int | float) and 0 <= factor <= 1):
        raise InvalidArgument(
            f"factor={factor!r}; expected a number in [0, 1] (1 leaves the bug out)"
        )
    return float(factor)


class ShrinkBox(Verifier):
    """Verifies ``[c - factor (c - lower), c + factor (upper - c)]``, c the box's midpoint.

    With ``factor=0.98`` a counterexample planted at 0.99 eps from the centre lies outside the
    shrunk box, so a sound verifier underneath proves the (wrong) box.
    """

    bug = "shrinks the input box toward its centre before verifying"

    def __init__(self, verifier: Verifier, factor: float = 0.98) -> None:
        self.verifier = verifier
        self.factor = _check_factor(factor)

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """The wrapped verifier's verdict on the shrunk box."""
        lower = np.asarray(instance.lower, dtype=np.float32)
        upper = np.asarray(instance.upper, dtype=np.float32)
        mid = (lower + upper) / 2
        shrunk = dataclasses.replace(
            instance,
            lower=(mid - self.factor * (mid - lower)).astype(np.float32),
            upper=(mid + self.factor * (upper - mid)).astype(np.float32),
        )
        return self.verifier.verify(net, shrunk)


class NonStrictComparison(LirpaVerifier):
    """A :class:`LirpaVerifier` that calls a margin lower bound of exactly 0 proved."""

    bug = "accepts margin lower bounds >= 0 instead of > 0"

    def holds(self, bounds: Tensor) -> Tensor:
        """Which margins it (wrongly) calls proved: ties included."""
        return bounds >= 0


class NumericalSlack(LirpaVerifier):
    """A :class:`LirpaVerifier` (CROWN by default) that calls margins proved when their
    lower bound exceeds ``-slack``: a verifier with numerical slack ``slack``.

    It is caught only on a counterexample whose margin is above ``-slack`` and whose box the
    bound method bounds that tightly, hence the graded-depth networks of the benchmark.
    """

    bug = "accepts margin lower bounds > -slack instead of > 0"

    def __init__(
        self,
        slack: float = 1e-3,
        method: Method = "CROWN",
        *,
        alpha_iterations: int = 20,
        timeout: float | None = None,
    ) -> None:
        if not (isinstance(slack, int | float) and 0 < slack < float("inf")):
            raise InvalidArgument(f"slack={slack!r}; expected a positive number (0 is sound)")
        super().__init__(method, alpha_iterations=alpha_iterations, timeout=timeout)
        self.slack = float(slack)

    def holds(self, bounds: Tensor) -> Tensor:
        """Which margins it (wrongly) calls proved: those within ``slack`` below 0 too."""
        return bounds > -self.slack


class DropTarget(Verifier):
    """Verifies the specification without one target class.

    ``target_index`` is a position in the instance's targets (every class but the label, in
    increasing order), taken modulo their number so that one is always dropped. On a 2-class
    network the only target goes: the specification's disjunction of violations is then
    empty, and the property holds vacuously, so the mutant answers "unsat" without asking the
    wrapped verifier; that is the bug's effect, not a special case of it.
    """

    bug = "leaves one target class out of the specification"

    def __init__(self, verifier: Verifier, target_index: int = 0) -> None:
        if not verifier.supports_targets:
            raise InvalidArgument(
                f"verifier={verifier!r} does not accept targets=; wrap a LirpaVerifier or a "
                "BranchAndBound"
            )
        if not isinstance(target_index, int) or target_index < 0:
            raise InvalidArgument(f"target_index={target_index!r}; expected an int >= 0")
        self.verifier = verifier
        self.target_index = target_index

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """The wrapped verifier's verdict on the specification without one target."""
        start = time.perf_counter()
        module = as_module(net)
        lower, _ = instance_box(instance)
        targets = list(default_targets(instance.label, num_classes(module, lower)))
        dropped = targets.pop(self.target_index % len(targets))
        if not targets:
            return Result(
                "unsat",
                seconds=elapsed(start),
                raw=f"target {dropped} dropped: no target left, the property holds vacuously",
            )
        return self.verifier.verify(net, instance, targets=targets)  # type: ignore[call-arg]


class DropDomains(Verifier):
    """A :class:`BranchAndBound` that forgets a random ``fraction`` of its pending sub-boxes
    whenever at least ``min_pending`` are pending (seeded by ``seed``, so deterministic)."""

    bug = "drops a fraction of the pending branch-and-bound domains"

    def __init__(
        self,
        bab: BranchAndBound,
        fraction: float = 0.5,
        *,
        min_pending: int = 10,
        seed: int = 0,
    ) -> None:
        if not isinstance(bab, BranchAndBound):
            raise InvalidArgument(f"bab={bab!r}; expected a vcheck.verify.bab.BranchAndBound")
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise InvalidArgument(f"fraction={fraction!r}; expected a number in (0, 1]")
        if not (isinstance(min_pending, int) and min_pending >= 1):
            raise InvalidArgument(f"min_pending={min_pending!r}; expected an int >= 1")
        self.bab = bab
        self.fraction = float(fraction)
        self.min_pending = min_pending
        self.seed = seed

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """Run the branch and bound with the dropping selection."""
        runner = copy.copy(self.bab)
        rng = np.random.default_rng(self.seed)
        sound_select = self.bab.select_domains

        def select(pending: list[Domain]) -> list[Domain]:
            pending = sound_select(pending)
            if len(pending) < self.min_pending:
                return pending
            drop = round(self.fraction * len(pending))
            keep = np.sort(rng.permutation(len(pending))[drop:])
            return [pending[i] for i in keep]

        runner.select_domains = select  # type: ignore[method-assign]
        return runner.verify(net, instance)


class ShrinkIntermediate(Verifier):
    """auto_LiRPA bounds with every ReLU input's bounds shrunk toward the clean activations.

    First a sound pass of ``method`` over the box gives each ReLU input's bounds [l, u]; they
    are replaced by ``[a + factor (l - a), a + factor (u - a)]``, ``a`` that input's value at
    the box's centre, and passed back to auto_LiRPA as fixed intermediate-layer bounds
    (``compute_bounds(intermediate_layer_bounds=...)``) for the output bound. Neurons that are
    only active near the planted counterexample look dead, so the counterexample disappears.
    Verdicts as :class:`LirpaVerifier`: "unsat" when every margin bound is > 0.
    """

    bug = "shrinks intermediate-layer bounds toward the clean activations"

    def __init__(
        self,
        method: Method = "CROWN",
        factor: float = 0.9,
        *,
        alpha_iterations: int = 20,
        timeout: float | None = None,
    ) -> None:
        if method not in METHODS:
            raise InvalidArgument(f"method={method!r}; expected one of {', '.join(METHODS)}")
        if not (isinstance(alpha_iterations, int) and alpha_iterations >= 1):
            raise InvalidArgument(f"alpha_iterations={alpha_iterations!r}; expected an int >= 1")
        self.method = method
        self.factor = _check_factor(factor)
        self.alpha_iterations = alpha_iterations
        self.timeout = check_timeout(timeout)

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """Bound the margins with shrunk intermediate bounds; "unsat" if all are > 0."""
        start = time.perf_counter()
        module = as_module(net)
        lower, upper = instance_box(instance)
        try:
            bounds = self.margin_bounds(module, lower, upper, instance.label)
        except UnsupportedNetworkError as exc:
            return Result("error", seconds=elapsed(start), reason=str(exc), refused=True)
        seconds = elapsed(start)
        proved = bool((bounds > 0).all())
        raw = f"min margin lower bound {bounds.min():.6g}"
        return timed_verdict(proved, seconds, self.timeout, raw, bound=float(bounds.min()))

    def margin_bounds(
        self,
        net: nn.Module,
        lower: Tensor,
        upper: Tensor,
        label: int,
        targets: Sequence[int] | None = None,
    ) -> Tensor:
        """Margin lower bounds (1, targets) of one box, with shrunk intermediate bounds."""
        lirpa = import_auto_lirpa()
        n = num_classes(net, lower)
        chosen = list(default_targets(label, n) if targets is None else targets)
        spec = torch.zeros(1, len(chosen), n)
        spec[0, :, label] = 1.0
        spec[0, torch.arange(len(chosen)), chosen] = -1.0
        centre = (lower + upper) / 2
        x = lirpa.BoundedTensor(centre, lirpa.PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper))
        first = "IBP" if self.method == "IBP" else "backward"  # alpha adds nothing to shrink
        grad = torch.enable_grad() if self.method == "alpha-CROWN" else torch.no_grad()
        try:
            module = self._module(net, tuple(lower.shape))
            module.set_bound_opts({"optimize_bound_args": {"iteration": self.alpha_iterations}})
            with _bounds._untouched(net), _bounds._quiet_lirpa():
                with torch.no_grad():
                    module(centre)  # the clean activations: every node's value at the centre
                    clean = {r.inputs[0].name: r.inputs[0].forward_value for r in module.relus}
                    module.compute_bounds(x=(x,), C=spec, method=first, bound_upper=False)
                    shrunk = {
                        name: (
                            (a + self.factor * (module[name].lower - a)).detach(),
                            (a + self.factor * (module[name].upper - a)).detach(),
                        )
                        for name, a in clean.items()
                    }
                with grad:
                    lb, _ = module.compute_bounds(
                        x=(x,),
                        C=spec,
                        method=_bounds._LIRPA_METHOD[self.method],
                        bound_upper=False,
                        intermediate_layer_bounds=shrunk,
                    )
        except Exception as exc:
            raise UnsupportedNetworkError(
                f"auto_LiRPA 0.3 cannot bound {type(net).__name__} with {self.method} "
                f"({_bounds._one_line(exc)})"
            ) from exc
        return lb.detach()

    @staticmethod
    def _module(net: nn.Module, shape: tuple[int, ...]) -> Any:
        # A module of its own: fixed intermediate bounds must never reach the cached modules
        # that the sound verifiers share.
        lirpa = import_auto_lirpa()
        opts = {
            "sparse_spec_alpha": False,
            "sparse_features_alpha": False,
            "sparse_intermediate_bounds": False,
        }
        with _bounds._untouched(net), _bounds._quiet_lirpa():
            module = lirpa.BoundedModule(net, torch.zeros(shape), bound_opts=opts, device="cpu")
        module.eval()  # its nodes default to training mode
        return module


#: name -> factory of each mutant around default sound verifiers, for suites and reports.
MUTANTS: dict[str, Any] = {
    "shrink_box": lambda: ShrinkBox(LirpaVerifier("IBP"), 0.98),
    "shrink_intermediate": lambda: ShrinkIntermediate("CROWN", 0.9),
    "drop_domains": lambda: DropDomains(BranchAndBound("IBP"), 0.5),
    "non_strict": lambda: NonStrictComparison("IBP"),
    "drop_target": lambda: DropTarget(LirpaVerifier("IBP")),
    "numerical_slack": lambda: NumericalSlack(1e-3, "CROWN"),
}
