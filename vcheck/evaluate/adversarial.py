"""Adversarial robustness (specs/robustness.md, "Adversarial"): the ``[adversarial]`` profile
table, one threat model evaluated end to end with foolbox 3, its sanity gates and Measurements.

Per threat model (L-inf, L2), on a seeded class-stratified sample of the eval set:

- robust accuracy at each epsilon: the per-sample worst case over FGSM, PGD on cross-entropy
  and PGD on a margin loss against the best other class and, targeted, against the 2nd to
  ``targets``-th most likely ones (each with random restarts), each attack run only on what
  the ones before it left standing; samples the model gets wrong clean count as broken at every
  epsilon, so at epsilon 0 robust accuracy is clean accuracy;
- the median L2 size of the smallest perturbation L2 DeepFool finds (informational);
- sanity gates against obfuscated gradients (Athalye et al. 2018), each a check that fails
  with "robustness numbers cannot be trusted: ...": robust accuracy does not rise with
  epsilon; at epsilon 0 it equals the cached clean accuracy; it is near 0 at a very large
  epsilon; PGD with twice the steps and restarts is not much stronger; a gradient-free attack
  (repeated uniform noise) breaks almost nothing PGD could not, at the largest epsilon.

Results are cached per (model, preprocessing, eval set, threat model settings, seed): a warm
run attacks nothing.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vcheck.cache import ResultCache, cache_key
from vcheck.checks import Measurement, Threshold
from vcheck.data.evalset import EvalSet, stratified_indices
from vcheck.errors import InvalidArgument
from vcheck.functional.intervals import wilson_interval
from vcheck.models.base import ModelUnderTest
from vcheck.profiles import (
    PROPORTION,
    ProfileContext,
    check_keys,
    check_table,
    fraction,
    number_list,
    parse_threshold,
    positive_int,
    positive_number,
)

# -- the [adversarial] table -------------------------------------------------------------------


@dataclass(frozen=True)
class ThreatModel:
    """One norm: epsilons (pixel space, [0, 1] images), a floor per epsilon, the attack
    budget and the very large epsilon of the "near 0" sanity gate."""

    norm: str
    epsilons: tuple[float, ...]
    min_robust_accuracy: tuple[Threshold | None, ...] = ()
    steps: int = 10
    rel_stepsize: float = 0.25
    restarts: int = 1
    margin_loss: bool = True
    targets: int = 3
    huge_epsilon: float = 0.5

    def threshold(self, k: int) -> Threshold | None:
        return self.min_robust_accuracy[k] if self.min_robust_accuracy else None

    def settings(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("min_robust_accuracy")
        return d


@dataclass(frozen=True)
class AdversarialProfile:
    """Settings and gates of the adversarial suite (the ``[adversarial]`` table)."""

    threat_models: tuple[ThreatModel, ...] = ()
    samples: int = 200
    batch_size: int = 256
    minimal_norm: bool = True
    noise_repeats: int = 20
    sanity_tolerance: float = 0.02
    near_zero: float = 0.02
    examples_per_class: int = 1

    @property
    def minimal_norm_with(self) -> str | None:
        """The threat model whose run also measures the minimal L2 perturbation (once)."""
        if not self.minimal_norm or not self.threat_models:
            return None
        norms = [t.norm for t in self.threat_models]
        return "l2" if "l2" in norms else norms[0]

    def threat_model(self, norm: str) -> ThreatModel:
        return next(t for t in self.threat_models if t.norm == norm)

    def settings(self) -> dict[str, Any]:
        """What determines a result besides the threat model (the cache key); gates aside."""
        return {
            "samples": self.samples,
            "minimal_norm": self.minimal_norm_with,
            "minimal_norm_attack": "L2DeepFool(steps=10, candidates=3)",
            "attacks": ATTACKS_REVISION,
            "noise_repeats": self.noise_repeats,
            "examples_per_class": self.examples_per_class,
        }


# Part of the cache key: what the attacks do beyond their settings (changing it re-attacks).
ATTACKS_REVISION = "2: cosine step-size decay, first misclassified iterate, targeted margins"
DEFAULT_THREAT_MODELS = {
    "linf": ThreatModel("linf", (0.01, 0.03, 0.1), huge_epsilon=0.5),
    "l2": ThreatModel("l2", (0.25, 0.5, 1.0), huge_epsilon=10.0),
}
_KEYS = (
    "samples",
    "batch_size",
    "minimal_norm",
    "noise_repeats",
    "sanity_tolerance",
    "near_zero",
    "examples_per_class",
    "linf",
    "l2",
)
_TM_KEYS = (
    "epsilons",
    "min_robust_accuracy",
    "steps",
    "rel_stepsize",
    "restarts",
    "margin_loss",
    "targets",
    "huge_epsilon",
)


def _bool(name: str, value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name}={value!r} in {where}: expected true or false")
    return value


def _targets(table: dict[str, Any], default: int, ctx: ProfileContext, where: str) -> int:
    """Other classes the margin PGD aims at; at most all of them."""
    others = max(len(ctx.classes) - 1, 1)
    if "targets" not in table:
        return min(default, others)
    value = positive_int("targets", table["targets"], where)
    if value > others:
        raise InvalidArgument(
            f"targets={value} in {where}: the model has {len(ctx.classes)} classes, so at "
            f"most {others} other classes to aim at; lower it"
        )
    return value


def _threat_model(norm: str, table: Any, ctx: ProfileContext) -> ThreatModel:
    where = ctx.where(f"adversarial.{norm}")
    table = check_table(f"adversarial.{norm}", table, str(ctx.path))
    check_keys(table, _TM_KEYS, where, "threat-model setting")
    d = DEFAULT_THREAT_MODELS[norm]
    get = table.get
    eps = number_list("epsilons", get("epsilons", list(d.epsilons)), where, minimum=0)
    if any(b <= a for a, b in itertools.pairwise(eps)) or eps[0] <= 0:
        raise InvalidArgument(
            f"epsilons={list(eps)!r} in {where}: expected positive, strictly increasing "
            "epsilons (epsilon 0 is always measured: it is clean accuracy)"
        )
    if norm == "linf" and eps[-1] > 1:
        raise InvalidArgument(f"epsilons={list(eps)!r} in {where}: L-inf epsilons are <= 1")
    floors: tuple[Threshold | None, ...] = ()
    if "min_robust_accuracy" in table:
        raw = table["min_robust_accuracy"]
        values = raw if isinstance(raw, list) else [raw] * len(eps)
        if len(values) != len(eps):
            raise InvalidArgument(
                f"min_robust_accuracy={raw!r} in {where}: expected one number per epsilon "
                f"({len(eps)}), or a single number for all"
            )
        floors = tuple(
            None
            if v == 0
            else parse_threshold("min_robust_accuracy", {"min": v}, PROPORTION, where)
            for v in values
        )
    huge = positive_number("huge_epsilon", get("huge_epsilon", d.huge_epsilon), where)
    if huge <= eps[-1]:
        raise InvalidArgument(
            f"huge_epsilon={huge:g} in {where}: expected more than the largest epsilon "
            f"({eps[-1]:g}); at it robust accuracy must be near 0"
        )
    return ThreatModel(
        norm=norm,
        epsilons=eps,
        min_robust_accuracy=floors,
        steps=positive_int("steps", get("steps", d.steps), where),
        rel_stepsize=positive_number("rel_stepsize", get("rel_stepsize", d.rel_stepsize), where),
        restarts=positive_int("restarts", get("restarts", d.restarts), where),
        margin_loss=_bool("margin_loss", get("margin_loss", d.margin_loss), where),
        targets=_targets(table, d.targets, ctx, where),
        huge_epsilon=huge,
    )


def parse_profile(table: dict[str, Any], ctx: ProfileContext) -> AdversarialProfile:
    """Validate the ``[adversarial]`` table; ``{}`` gives the defaults (L-inf and L2,
    every robust accuracy informational; the sanity gates always apply).

    Example::

        [adversarial]
        samples = 200                       # seeded, class-stratified (--max-samples caps it)
        [adversarial.linf]
        epsilons = [0.01, 0.03, 0.1]
        min_robust_accuracy = [0.7, 0.4, 0]  # one per epsilon; 0: informational
        steps = 10                           # PGD steps; restarts = 1; rel_stepsize = 0.25
        targets = 3                          # margin PGD: best other class, 2nd, 3rd
        [adversarial.l2]
        epsilons = [0.25, 0.5, 1.0]
    """
    where = ctx.where("adversarial")
    check_keys(table, _KEYS, where, "adversarial setting")
    d = AdversarialProfile()
    get = table.get
    norms = [n for n in ("linf", "l2") if n in table] or ["linf", "l2"]
    tms = tuple(_threat_model(n, table.get(n, {}), ctx) for n in norms)
    return AdversarialProfile(
        threat_models=tms,
        samples=positive_int("samples", get("samples", d.samples), where),
        batch_size=positive_int("batch_size", get("batch_size", d.batch_size), where),
        minimal_norm=_bool("minimal_norm", get("minimal_norm", d.minimal_norm), where),
        noise_repeats=positive_int("noise_repeats", get("noise_repeats", d.noise_repeats), where),
        sanity_tolerance=fraction(
            "sanity_tolerance", get("sanity_tolerance", d.sanity_tolerance), where
        ),
        near_zero=fraction("near_zero", get("near_zero", d.near_zero), where),
        examples_per_class=positive_int(
            "examples_per_class", get("examples_per_class", d.examples_per_class), where, minimum=0
        ),
    )


# -- one threat model ----------------------------------------------------------------------------

GATES = ("monotone", "eps0_is_clean", "near_zero_at_huge_eps", "stronger_attack", "gradient_free")
_DESCRIPTIONS = {
    "monotone": "robust accuracy never rises with epsilon",
    "eps0_is_clean": "at epsilon 0 robust accuracy equals clean accuracy",
    "near_zero_at_huge_eps": "robust accuracy near 0 at a very large epsilon",
    "stronger_attack": "twice the PGD steps and restarts are not much stronger",
    "gradient_free": "a gradient-free attack is not stronger than PGD",
}


def attack_plan(tm: ThreatModel) -> list:
    """The attacks of a threat model in the order they run (each on what is left)."""
    from vcheck.robustness.attacks import AttackSpec

    budget = (tm.steps, tm.rel_stepsize, tm.restarts)
    plan = [AttackSpec("fgsm", tm.norm), AttackSpec("pgd", tm.norm, *budget)]
    if tm.margin_loss:  # the best other class, then the 2nd, 3rd, ... most likely at clean
        ranks = (0, *range(2, tm.targets + 1))
        plan += [AttackSpec("pgd_margin", tm.norm, *budget, target=t) for t in ranks]
    return plan


def select_samples(labels: torch.Tensor, samples: int, seed: int) -> list[int]:
    return stratified_indices(labels, min(samples, len(labels)), seed)


def run_threat_model(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    tm: ThreatModel,
    profile: AdversarialProfile,
    *,
    seed: int,
    write: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Attack one threat model; ``clean_pred`` (len(eval_set),) from the cached pass."""
    from vcheck.robustness.attacks import (
        AttackSpec,
        attack_success,
        foolbox_model,
        minimal_l2,
    )

    started = time.perf_counter()
    idx = np.asarray(select_samples(eval_set.labels, profile.samples, seed))
    x = eval_set.images(idx.tolist()).to(model.device)
    y = eval_set.labels[idx].to(model.device)
    labels = y.cpu().numpy()
    clean = clean_pred[idx]
    correct = clean == labels
    fmodel = foolbox_model(model.module)
    eps = np.asarray((0.0, *tm.epsilons))
    k = len(eps)
    bs = profile.batch_size
    run = dict(seed=seed, ids=idx, batch_size=bs)
    if write:
        write(
            f"vcheck: adversarial {tm.norm} on {eval_set.name}: attacking {int(correct.sum())} "
            f"correctly classified of {len(idx)} samples at {k - 1} epsilons"
        )
    # At epsilon 0 nothing can move: one gradient step checks the model agrees with itself.
    eps0 = attack_success(
        fmodel, AttackSpec("fgsm", tm.norm), x, y, [0.0], todo=correct[None], **run
    )
    broken = np.tile(~correct, (k, 1))
    broken[0] |= eps0[0]
    by = np.full((k, len(idx)), -1, np.int8)  # which attack of the plan broke it first
    for a, spec in enumerate(attack_plan(tm)):
        todo = ~broken[1:]
        hit = attack_success(fmodel, spec, x, y, tm.epsilons, todo=todo, **run)
        by[1:][hit & (by[1:] < 0)] = a
        broken[1:] |= hit
    # Sanity gates on what is left at the largest epsilon, and at a very large one.
    standing = (~broken[-1])[None]
    strong = np.zeros(len(idx), bool)
    for spec in attack_plan(tm)[1:]:
        harder = replace(spec, steps=2 * spec.steps, restarts=2 * spec.restarts)
        left = standing & ~strong[None]
        strong |= attack_success(
            fmodel, harder, x, y, [tm.epsilons[-1]], todo=left, **{**run, "seed": seed + 1}
        )[0]
    noise = attack_success(
        fmodel,
        AttackSpec("noise", tm.norm, repeats=profile.noise_repeats),
        x,
        y,
        [tm.epsilons[-1]],
        todo=standing,
        **run,
    )[0]
    huge = ~correct.copy()
    for spec in attack_plan(tm):
        huge |= attack_success(
            fmodel, replace(spec, restarts=1), x, y, [tm.huge_epsilon], todo=~huge[None], **run
        )[0]
    norms = np.full(len(idx), np.nan)
    if profile.minimal_norm_with == tm.norm and correct.any():
        norms[correct] = minimal_l2(fmodel, x[correct], y[correct], batch_size=bs)
    ex_index, ex_eps, ex_adv, ex_pred = _examples(
        fmodel, model, x, y, tm, broken, by, correct, idx, profile, seed
    )
    if write:
        took = time.perf_counter() - started
        write(f"vcheck: adversarial {tm.norm} on {eval_set.name}: done in {took:.1f} s")
    return {
        "ids": idx,
        "labels": labels,
        "clean": clean,
        "epsilons": eps,
        "broken": broken,
        "broken_by": by,
        "strong": strong,
        "noise": noise,
        "huge": huge,
        "min_l2": norms,
        "example_index": ex_index,
        "example_eps": ex_eps,
        "example_images": ex_adv,
        "example_pred": ex_pred,
    }


def _examples(fmodel, model, x, y, tm, broken, by, correct, idx, profile, seed):
    """Per class, the first samples broken at the smallest epsilon that broke them: the
    adversarial image (regenerated by the attack that broke it; per-sample seeds make that
    exact) and the model's prediction on it."""
    from vcheck.robustness.attacks import make_attack, restart_seeds

    plan = attack_plan(tm)
    chosen: list[tuple[int, int]] = []
    for c in range(len(model.classes)):
        members = [
            i for i in np.flatnonzero(correct & (y.cpu().numpy() == c)) if broken[1:, i].any()
        ]
        for i in members[: profile.examples_per_class]:
            chosen.append((i, 1 + int(np.flatnonzero(broken[1:, i])[0])))
    images, preds, kept, kept_eps = [], [], [], []
    for i, k in chosen:
        spec = plan[int(by[k, i])]
        attack = make_attack(spec)
        for r in range(spec.restarts):
            if hasattr(attack, "seeds"):
                attack.seeds = restart_seeds(seed, r, idx[[i]])
            _, adv, ok = attack(fmodel, x[[i]], y[[i]], epsilons=float(tm.epsilons[k - 1]))
            if bool(ok[0]):
                with torch.no_grad():
                    pred = int(model.module(adv).argmax(1)[0])
                images.append((adv[0].cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy())
                preds.append(pred)
                kept.append(i)
                kept_eps.append(tm.epsilons[k - 1])
                break
    c, h, w = x.shape[1:]
    return (
        np.asarray(kept, np.int64),
        np.asarray(kept_eps, np.float64),
        np.stack(images) if images else np.zeros((0, c, h, w), np.uint8),
        np.asarray(preds, np.int64),
    )


@dataclass(frozen=True)
class GateResult:
    """One sanity gate: the measured value, its ceiling, and a readable finding."""

    name: str
    value: float
    n: int
    ceiling: float
    finding: str

    @property
    def passed(self) -> bool:
        return self.value <= self.ceiling

    def note(self) -> str:
        if self.passed:
            return f"{_DESCRIPTIONS[self.name]}: {self.finding}"
        what = _DESCRIPTIONS[self.name]
        return f"robustness numbers cannot be trusted: {what} fails ({self.finding})"


@dataclass(frozen=True)
class ThreatOutcome:
    """A threat model's per-sample results, plus what the report shows."""

    threat_model: ThreatModel
    arrays: dict[str, np.ndarray]
    from_cache: bool
    classes: tuple[str, ...]
    tolerance: float = 0.02
    near_zero: float = 0.02
    gates: dict[str, GateResult] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gates", self._gates())

    @property
    def n(self) -> int:
        return len(self.arrays["labels"])

    @property
    def epsilons(self) -> list[float]:
        return [float(e) for e in self.arrays["epsilons"]]

    def robust_counts(self) -> np.ndarray:
        return (~self.arrays["broken"]).sum(1)

    def robust_accuracy(self, k: int, confidence: float) -> Measurement:
        """Robust accuracy at ``epsilons[k]`` (k = 0: epsilon 0) with a Wilson interval."""
        a, n = self.arrays, self.n
        robust = int(self.robust_counts()[k])
        by = a["broken_by"][k]
        details: dict[str, Any] = {
            "norm": self.threat_model.norm,
            "epsilon": self.epsilons[k],
            "clean_accuracy": round(float((a["clean"] == a["labels"]).mean()), 6) if n else None,
        }
        if k > 0:
            plan = attack_plan(self.threat_model)
            details["broken_by"] = {s.label: int((by == j).sum()) for j, s in enumerate(plan)}
        return Measurement(
            robust / n if n else math.nan,
            n,
            wilson_interval(robust, n, confidence),
            "wilson",
            details,
        )

    def median_l2(self) -> Measurement:
        """Median L2 size of the smallest DeepFool perturbation over clean-correct samples."""
        norms = self.arrays["min_l2"]
        found = norms[~np.isnan(norms)]
        value = float(np.median(found)) if len(found) else math.nan
        return Measurement(
            value,
            len(found),
            None,
            None,
            {"not_found": int(np.isinf(found).sum()), "attack": "L2 DeepFool (foolbox)"},
        )

    def _gates(self) -> dict[str, GateResult]:
        a, n = self.arrays, max(self.n, 1)
        robust = self.robust_counts() / n
        eps = self.epsilons
        rises = np.diff(robust)
        worst = int(np.argmax(rises)) if len(rises) else 0
        nxt = min(worst + 1, len(eps) - 1)
        rise = float(max(rises.max(initial=0.0), 0.0))
        correct = a["clean"] == a["labels"]
        flips = int((correct & a["broken"][0]).sum())
        standing = ~a["broken"][-1]
        strong = int((standing & a["strong"]).sum())
        noise = int((standing & a["noise"]).sum())
        huge = float((~a["huge"]).mean()) if self.n else 0.0
        tol = self.tolerance
        big = self.threat_model.huge_epsilon
        return {
            "monotone": GateResult(
                "monotone",
                rise,
                self.n,
                tol,
                f"largest rise {rise:.4f} from eps {eps[worst]:g} to {eps[nxt]:g}",
            ),
            "eps0_is_clean": GateResult(
                "eps0_is_clean",
                flips / n,
                self.n,
                0.0,
                f"{flips} clean-correct samples misclassified by the attack pipeline at eps 0",
            ),
            "near_zero_at_huge_eps": GateResult(
                "near_zero_at_huge_eps",
                huge,
                self.n,
                self.near_zero,
                f"robust accuracy {huge:.4f} at eps {big:g}",
            ),
            "stronger_attack": GateResult(
                "stronger_attack",
                strong / n,
                self.n,
                tol,
                f"{strong} more samples broken at eps {eps[-1]:g}",
            ),
            "gradient_free": GateResult(
                "gradient_free",
                noise / n,
                self.n,
                tol,
                f"uniform noise broke {noise} samples PGD could not at eps {eps[-1]:g}",
            ),
        }


def evaluate_threat_model(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    tm: ThreatModel,
    profile: AdversarialProfile,
    *,
    seed: int,
    cache: ResultCache,
    write: Callable[[str], None] | None = None,
) -> ThreatOutcome:
    """:func:`run_threat_model` through the result cache (a warm run attacks nothing)."""
    import vcheck

    key = cache_key(
        vcheck.__version__,
        "adversarial",
        model.fingerprint,
        model.cfg.preprocessing_key(),
        eval_set.fingerprint,
        tm.settings(),
        profile.settings(),
        seed,
    )

    def valid(arrays) -> bool:
        names = {"ids", "labels", "clean", "epsilons", "broken", "broken_by", "strong", "noise"}
        names |= {"huge", "min_l2", "example_index", "example_eps", "example_images"}
        names |= {"example_pred"}
        return names <= set(arrays) and arrays["broken"].shape == (
            len(tm.epsilons) + 1,
            len(arrays["labels"]),
        )

    arrays, from_cache = cache.arrays(
        key,
        lambda: run_threat_model(model, eval_set, clean_pred, tm, profile, seed=seed, write=write),
        validate=valid,
    )
    if from_cache and write is not None:
        write(f"vcheck: adversarial {tm.norm} on {eval_set.name}: from cache")
    return ThreatOutcome(
        tm, arrays, from_cache, tuple(model.classes), profile.sanity_tolerance, profile.near_zero
    )
