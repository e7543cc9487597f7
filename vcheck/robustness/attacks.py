"""foolbox 3 attacks as the adversarial suite runs them, and the loop that runs them cheaply.

Every attack is a foolbox attack object (settings in the constructor, data in the call). Two
small subclasses add what foolbox lacks:

- a per-sample seeded random start (:class:`SeededStartMixin`): sample ``i`` of restart ``r``
  always starts from the same point, whatever else is in its batch, so attacking only the
  samples that still need it gives exactly what attacking all of them gives;
- a margin loss (:class:`MarginLossMixin`, CW/DLR-style: the best other logit minus the true
  one), which does not saturate as cross-entropy does once the true class is unlikely; the
  default L-inf evaluation takes the per-sample worst case over both losses.

:func:`attack_success` runs one attack at several epsilons with restarts, attacking per
epsilon only the samples still standing (clean correct, not yet broken at that epsilon).

Public names: :data:`NORMS`, :class:`AttackSpec`, :func:`make_attack`,
:func:`foolbox_model`, :func:`attack_success`, :func:`minimal_l2`, :func:`restart_seeds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import eagerpy as ep
import foolbox as fb
import numpy as np
import torch
from torch import nn

NORMS = ("linf", "l2")
KINDS = ("fgsm", "pgd", "pgd_margin", "noise")
ProgressFn = Callable[[int], None]


class TiedToInput(nn.Module):
    """``module``'s logits plus ``0 * sum(x)``: the same values, but always a graph back to
    the input. A model whose output does not depend on its input (or carries no gradient)
    then gives zero gradients, so the gradient attacks find nothing and the sanity gates
    judge the result, where foolbox would stop on an assertion."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        return out + 0 * x.flatten(1).sum(1, keepdim=True).to(out.dtype)


def foolbox_model(module: nn.Module) -> fb.PyTorchModel:
    """foolbox's view of a vcheck module: inputs in [0, 1], normalisation inside the module."""
    return fb.PyTorchModel(TiedToInput(module).eval(), bounds=(0, 1))


def restart_seeds(seed: int, restart: int, ids: np.ndarray) -> list[int]:
    """One seed per (run seed, restart, sample index): independent of batch composition."""
    return [(seed * 1_000_003 + restart * 7_919 + int(i) * 104_729) % 2**63 for i in ids]


class SeededStartMixin:
    """A random start drawn per sample from its own seed (``self.seeds``, set per call);
    foolbox's own start (global generator) when no seeds are set."""

    seeds: Sequence[int] | None = None

    def get_random_start(self, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
        if self.seeds is None:
            return super().get_random_start(x0, epsilon)
        raw = x0.raw
        shape = raw.shape[1:]
        draws = []
        for s in self.seeds:
            g = torch.Generator().manual_seed(int(s))
            if self.norm == "linf":
                draws.append((torch.rand(shape, generator=g) * 2 - 1) * epsilon)
            else:  # uniform in the L2 ball: Gaussian direction, radius eps * u^(1/d)
                d = torch.randn(shape, generator=g)
                u = torch.rand((), generator=g) ** (1 / d.numel())
                draws.append(d / d.norm().clamp_min(1e-12) * epsilon * u)
        delta = torch.stack(draws).to(raw.device, raw.dtype)
        return ep.astensor(raw + delta)


class LogitLossMixin:
    """PGD on a per-sample loss of the logits (cross-entropy here), returning per sample the
    first iterate that was misclassified: foolbox's PGD returns the last iterate, which a
    fixed step can carry back across the boundary. The iterates' logits are already computed
    for the gradient, so this costs nothing."""

    _adv: torch.Tensor | None = None
    _found: torch.Tensor | None = None

    def sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, y, reduction="none")

    def get_loss_fn(self, model: Any, labels: ep.Tensor) -> Callable[[ep.Tensor], ep.Tensor]:
        y = labels.raw

        def loss_fn(inputs: ep.Tensor) -> ep.Tensor:
            logits = model(inputs).raw
            self._remember(inputs.raw.detach(), logits.detach().argmax(1) != y)
            return ep.astensor(self.sample_loss(logits, y).sum())

        return loss_fn

    def _remember(self, x: torch.Tensor, wrong: torch.Tensor) -> None:
        if self._adv is None:
            self._adv, self._found = x.clone(), wrong.clone()
            return
        new = wrong & ~self._found
        self._adv[new] = x[new]
        self._found |= new

    def run(self, model: Any, inputs: Any, criterion: Any, *, epsilon: float, **kwargs: Any):
        self._adv = self._found = None
        out = super().run(model, inputs, criterion, epsilon=epsilon, **kwargs)
        if self._found is None or not bool(self._found.any()):
            return out
        raw = out.raw if isinstance(out, ep.Tensor) else out
        mask = self._found.view(-1, *([1] * (raw.ndim - 1)))
        kept = torch.where(mask, self._adv, raw)
        self._adv = self._found = None
        return ep.astensor(kept) if isinstance(out, ep.Tensor) else kept


class MarginLossMixin(LogitLossMixin):
    """Maximise ``z_t - z_y`` instead of cross-entropy (CW/DLR-style; it does not saturate
    once the true class is unlikely). ``t`` is the best other class (``target_rank = 0``), or
    the ``target_rank``-th most likely other class at the clean input, a targeted margin as
    in APGD-T: it reaches boundaries the untargeted loss's gradient does not point to."""

    target_rank: int = 0
    _targets: torch.Tensor | None = None

    def sample_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, y[:, None])[:, 0]
        if self._targets is None:
            return logits.scatter(1, y[:, None], -math.inf).amax(1) - true
        return logits.gather(1, self._targets[:, None])[:, 0] - true

    def run(self, model: Any, inputs: Any, criterion: Any, *, epsilon: float, **kwargs: Any):
        self._targets = None
        if self.target_rank:
            x0 = inputs.raw if isinstance(inputs, ep.Tensor) else inputs
            y = fb.attacks.base.get_criterion(criterion).labels.raw
            with torch.no_grad():
                z = model(ep.astensor(x0)).raw.scatter(1, y[:, None], -math.inf)
            self._targets = z.topk(self.target_rank, 1).indices[:, -1]
        try:
            return super().run(model, inputs, criterion, epsilon=epsilon, **kwargs)
        finally:
            self._targets = None


class DecayingStep(fb.attacks.gradient_descent_base.Optimizer):
    """Step size ``2 * stepsize`` at the first step, cosine-decayed to 0 at the last (mean:
    ``stepsize``): large steps cross the ball early, small ones settle near the boundary,
    the idea of APGD's step-size schedule without its bookkeeping."""

    def __init__(self, stepsize: float, steps: int) -> None:
        self.stepsize, self.steps, self.t = stepsize, steps, 0

    def __call__(self, gradient: ep.Tensor) -> ep.Tensor:
        factor = 1 + math.cos(math.pi * self.t / max(self.steps, 1))
        self.t += 1
        return self.stepsize * factor * gradient


class DecayingStepMixin:
    def get_optimizer(self, x: ep.Tensor, stepsize: float) -> DecayingStep:
        return DecayingStep(stepsize, self.steps)


class SeededLinfPGD(DecayingStepMixin, LogitLossMixin, SeededStartMixin, fb.attacks.LinfPGD):
    norm = "linf"


class SeededL2PGD(DecayingStepMixin, LogitLossMixin, SeededStartMixin, fb.attacks.L2PGD):
    norm = "l2"


class MarginLinfPGD(MarginLossMixin, SeededLinfPGD):
    pass


class MarginL2PGD(MarginLossMixin, SeededL2PGD):
    pass


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a threat model: kind, norm, and (for PGD) steps, step and restarts.

    ``kind``: "fgsm" (one signed/normalised gradient step), "pgd" (cross-entropy),
    "pgd_margin" (margin loss against the best other class; ``target`` = k > 0: against
    the k-th most likely other class at the clean input) or "noise" (repeated uniform
    noise, gradient-free).
    """

    kind: str
    norm: str
    steps: int = 1
    rel_stepsize: float = 0.1
    restarts: int = 1
    repeats: int = 1
    target: int = 0

    @property
    def label(self) -> str:
        if self.kind == "fgsm":
            return f"{self.norm} fgsm"
        if self.kind == "noise":
            return f"{self.norm} uniform noise x{self.repeats}"
        against = f", target: other class ranked {self.target}" if self.target else ""
        return f"{self.norm} {self.kind}({self.steps} steps x {self.restarts} restarts{against})"


def make_attack(spec: AttackSpec) -> fb.attacks.base.FixedEpsilonAttack:
    """The foolbox attack object of ``spec``."""
    A = fb.attacks
    linf = spec.norm == "linf"
    if spec.kind == "fgsm":
        return A.FGSM() if linf else A.FGM()
    if spec.kind == "noise":
        cls = (
            A.LinfRepeatedAdditiveUniformNoiseAttack
            if linf
            else A.L2RepeatedAdditiveUniformNoiseAttack
        )
        return cls(repeats=spec.repeats, check_trivial=True)
    if spec.kind == "pgd":
        cls = SeededLinfPGD if linf else SeededL2PGD
    elif spec.kind == "pgd_margin":
        cls = MarginLinfPGD if linf else MarginL2PGD
    else:
        raise ValueError(f"kind={spec.kind!r}: expected one of {', '.join(KINDS)}")
    attack = cls(steps=spec.steps, rel_stepsize=spec.rel_stepsize, random_start=True)
    attack.target_rank = spec.target
    return attack


def attack_success(
    fmodel: fb.PyTorchModel,
    spec: AttackSpec,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilons: Sequence[float],
    *,
    seed: int,
    ids: np.ndarray | None = None,
    todo: np.ndarray | None = None,
    batch_size: int = 256,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Which samples ``spec`` breaks at each epsilon, ``(K, N)`` bool.

    Only ``todo[k, i]`` (default: all) is attacked at ``epsilons[k]``; each restart attacks
    only what earlier restarts left standing. With ``ids`` (the samples' indices in the eval
    set) the random starts depend on the sample alone, so the result equals one plain
    foolbox call per restart on all samples, OR-ed over restarts.
    """
    n = len(x)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    todo = np.ones((len(epsilons), n), bool) if todo is None else np.asarray(todo, bool)
    broken = np.zeros((len(epsilons), n), bool)
    attack = make_attack(spec)
    for k, eps in enumerate(epsilons):
        for r in range(spec.restarts):
            left = np.flatnonzero(todo[k] & ~broken[k])
            if not len(left):
                break
            for start in range(0, len(left), batch_size):
                part = left[start : start + batch_size]
                broken[k, part] = _run(attack, fmodel, x, y, part, eps, seed, r, ids)
                if progress is not None:
                    progress(len(part))
    return broken


def _run(attack, fmodel, x, y, part, eps, seed, restart, ids) -> np.ndarray:
    xb, yb = x[part], y[part]
    if isinstance(attack, SeededStartMixin):
        attack.seeds = restart_seeds(seed, restart, ids[part])
        try:
            _, _, ok = attack(fmodel, xb, yb, epsilons=float(eps))
        finally:
            attack.seeds = None
    else:  # foolbox's own random draws (noise attacks): seeded per batch, global state kept
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(restart_seeds(seed, restart, ids[part[:1]])[0])
            _, _, ok = attack(fmodel, xb, yb, epsilons=float(eps))
    return ok.cpu().numpy().astype(bool)


def minimal_l2(
    fmodel: fb.PyTorchModel,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 10,
    candidates: int = 3,
    batch_size: int = 256,
) -> np.ndarray:
    """L2 size of the smallest perturbation L2 DeepFool finds per sample (inf: none found).

    A batch runs until its last sample is adversarial, so ``steps`` bounds the cost; DeepFool
    crosses the linearised boundary of the ``candidates`` most likely classes in a few steps.
    """
    attack = fb.attacks.L2DeepFoolAttack(steps=steps, candidates=candidates)
    out = np.full(len(x), np.inf)
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        _, adv, ok = attack(fmodel, xb, yb, epsilons=None)
        norms = (adv - xb).flatten(1).norm(dim=1).cpu().numpy()
        ok = ok.cpu().numpy().astype(bool)
        out[start : start + len(xb)] = np.where(ok, norms, np.inf)
    return out
