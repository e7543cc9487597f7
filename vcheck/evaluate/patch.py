"""Adversarial-patch robustness (specs/robustness.md, "Adversarial patch"): the ``[patch]``
profile table, one patch case (size x location) evaluated end to end, and its Measurements.

Per case, on a seeded class-stratified sample of the eval set:

- a patch is optimised through the REAP-style renderer (:mod:`vcheck.patch`): by default one
  universal patch, fitted on other images of the eval set than those it is judged on
  (``fit_samples``), so the attack success rate says how a printed patch generalises;
  ``attack = "per_class"`` fits one per class, ``"per_image"`` one per judged image;
- the model is then evaluated on fresh renderings of that patch, and of a uniform-noise
  patch of the same size drawn identically (the occlusion baseline);
- accuracy under each patch and the attack success rate ASR = #(correct clean and wrong
  with the patch) / #(correct clean), each with a Wilson interval.

Results are cached per (model, preprocessing, eval set, case, settings, seed).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vcheck.cache import ResultCache, cache_key
from vcheck.checks import Measurement, Threshold
from vcheck.data.evalset import EvalSet, stratified_indices
from vcheck.errors import InvalidArgument, UnknownNameError
from vcheck.functional.attack_success import attack_success_counts
from vcheck.functional.intervals import wilson_interval
from vcheck.models.base import ModelUnderTest
from vcheck.patch.attacks import (
    OPTIMIZERS,
    PerImagePatchAttack,
    UniversalPatchAttack,
    noise_patches,
    predict_patched,
)
from vcheck.patch.render import LIGHTING, LOCATIONS, PatchRenderer, patch_shape
from vcheck.profiles import (
    ERROR_RATE,
    ProfileContext,
    check_keys,
    fraction,
    number_list,
    parse_threshold,
    positive_int,
    positive_number,
    string_list,
)
from vcheck.progress import Progress

ATTACKS = ("universal", "per_class", "per_image")
KINDS = ("adversarial", "noise")


# -- the [patch] table -------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchCase:
    """One patch size (fraction of the image area) at one location."""

    area: float
    location: str

    @property
    def id(self) -> str:
        return f"area{self.area:g}-{self.location}"

    @property
    def label(self) -> str:
        return f"area={self.area:g},location={self.location}"


@dataclass(frozen=True)
class PatchProfile:
    """Settings and gates of the patch suite (the ``[patch]`` table; these are the defaults)."""

    sizes: tuple[float, ...] = (0.02, 0.05, 0.1)
    locations: tuple[str, ...] = ("center", "random")
    max_asr: tuple[Threshold | None, ...] = ()  # one per size; empty: informational
    attack: str = "universal"
    samples: int = 200
    fit_samples: int = 200
    steps: int = 20
    step_size: float = 0.25
    optimizer: str = "adam"
    tv_weight: float = 0.0
    batch_size: int = 32
    distortion: float = 0.1
    lighting: str = "covered"
    examples: int = 4
    cases: tuple[PatchCase, ...] = field(init=False)

    def __post_init__(self) -> None:
        cases = tuple(PatchCase(a, loc) for a in self.sizes for loc in self.locations)
        object.__setattr__(self, "cases", cases)

    def threshold(self, area: float) -> Threshold | None:
        """The ASR gate of a patch size (None: informational)."""
        if not self.max_asr:
            return None
        return self.max_asr[self.sizes.index(area)]

    def settings(self) -> dict[str, Any]:
        """Everything but the gates: what determines a case's result (the cache key)."""
        d = asdict(self)
        for key in ("max_asr", "cases", "sizes", "locations"):
            d.pop(key)
        return d


_KEYS = (
    "sizes",
    "locations",
    "max_asr",
    "attack",
    "samples",
    "fit_samples",
    "steps",
    "step_size",
    "optimizer",
    "tv_weight",
    "batch_size",
    "distortion",
    "lighting",
    "examples",
)


def _choice(name: str, value: Any, choices: tuple[str, ...], where: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise UnknownNameError(f"{name} (in {where})", str(value), choices)
    return value


def parse_profile(table: dict[str, Any], ctx: ProfileContext) -> PatchProfile:
    """Validate the ``[patch]`` table; ``{}`` gives the defaults (every check informational).

    Example::

        [patch]
        sizes = [0.02, 0.05, 0.1]          # patch area, fraction of the image
        locations = ["center", "random"]   # named positions, "random" per image
        max_asr = [0.3, 0.5, 0.7]          # one per size (or one number for all)
        attack = "universal"               # or "per_class", "per_image"
        steps = 20
        step_size = 0.25
        optimizer = "adam"                 # or "sign"
        tv_weight = 0.0
        lighting = "covered"               # or "image", "none"
    """
    where = ctx.where("patch")
    check_keys(table, _KEYS, where, "patch setting")
    d = PatchProfile()
    get = table.get
    sizes = number_list("sizes", get("sizes", list(d.sizes)), where)
    for s in sizes:
        fraction("sizes", s, where, open_low=True)
    if len(set(sizes)) != len(sizes):
        raise InvalidArgument(f"sizes={list(sizes)!r} in {where}: each size at most once")
    locations = string_list("locations", get("locations", list(d.locations)), where)
    for loc in locations:
        _choice("location", loc, LOCATIONS, where)
    if len(set(locations)) != len(locations):
        raise InvalidArgument(f"locations={list(locations)!r} in {where}: each at most once")
    max_asr: tuple[Threshold | None, ...] = ()
    if "max_asr" in table:
        raw = table["max_asr"]
        values = [raw] * len(sizes) if not isinstance(raw, list) else raw
        if len(values) != len(sizes):
            raise InvalidArgument(
                f"max_asr={raw!r} in {where}: expected one number per size ({len(sizes)}), "
                "or a single number for all"
            )
        max_asr = tuple(parse_threshold("max_asr", {"max": v}, ERROR_RATE, where) for v in values)
    return PatchProfile(
        sizes=sizes,
        locations=locations,
        max_asr=max_asr,
        attack=_choice("attack", get("attack", d.attack), ATTACKS, where),
        samples=positive_int("samples", get("samples", d.samples), where),
        fit_samples=positive_int("fit_samples", get("fit_samples", d.fit_samples), where),
        steps=positive_int("steps", get("steps", d.steps), where),
        step_size=positive_number("step_size", get("step_size", d.step_size), where),
        optimizer=_choice("optimizer", get("optimizer", d.optimizer), OPTIMIZERS, where),
        tv_weight=_non_negative("tv_weight", get("tv_weight", d.tv_weight), where),
        batch_size=positive_int("batch_size", get("batch_size", d.batch_size), where),
        distortion=_distortion(get("distortion", d.distortion), where),
        lighting=_choice("lighting", get("lighting", d.lighting), LIGHTING, where),
        examples=positive_int("examples", get("examples", d.examples), where, minimum=0),
    )


def _non_negative(name: str, value: Any, where: str) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return positive_number(name, value, where)


def _distortion(value: Any, where: str) -> float:
    v = fraction("distortion", value, where)
    if v >= 0.5:
        raise InvalidArgument(
            f"distortion={value!r} in {where}: expected a fraction of the patch side in [0, 0.5)"
        )
    return v


# -- one case --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchOutcome:
    """Predictions on the judged images of one case, plus what the report shows."""

    case: PatchCase
    arrays: dict[str, np.ndarray]
    from_cache: bool
    classes: tuple[str, ...]

    @property
    def patch_size(self) -> tuple[int, int]:
        h, w = self.arrays["patch_size"].tolist()
        return int(h), int(w)

    @property
    def n(self) -> int:
        return len(self.arrays["labels"])

    def asr_counts(self, kind: str) -> tuple[int, int]:
        a = self.arrays
        return attack_success_counts(a["labels"], a["clean"], a[kind])

    def asr(self, kind: str, confidence: float) -> Measurement:
        """Attack success rate of the ``kind`` patch ("adversarial" or "noise")."""
        k, n = self.asr_counts(kind)
        return Measurement(
            k / n if n else math.nan,
            n,
            wilson_interval(k, n, confidence),
            "wilson",
            self._details(kind),
        )

    def accuracy(self, kind: str, confidence: float) -> Measurement:
        """Top-1 accuracy with the ``kind`` patch on every judged image."""
        a = self.arrays
        k, n = int((a[kind] == a["labels"]).sum()), self.n
        return Measurement(
            k / n if n else math.nan,
            n,
            wilson_interval(k, n, confidence),
            "wilson",
            self._details(kind),
        )

    def _details(self, kind: str) -> dict[str, Any]:
        h, w = self.patch_size
        a = self.arrays
        clean_ok = a["clean"] == a["labels"]
        fooled = a[kind][clean_ok & (a[kind] != a["labels"])]
        # Where the fooled images went: one class taking nearly all of them, under an
        # untargeted attack, is the mark of a planted backdoor.
        top = int(np.bincount(fooled).argmax()) if len(fooled) else None
        share = None if top is None else round(float(np.mean(fooled == top)), 6)
        return {
            "fooled_mostly_to": None if top is None else self.classes[top],
            "fooled_mostly_to_share": share,
            "patch": kind,
            "area": self.case.area,
            "location": self.case.location,
            "patch_pixels": f"{h}x{w}",
            "clean_accuracy": round(float(clean_ok.mean()), 6) if self.n else None,
            "fit_images": int(self.arrays["n_fit"]),
        }


def _case_seed(seed: int, case: PatchCase) -> int:
    return (seed * 1_000_003 + zlib.crc32(case.id.encode())) % 2**31


def select_images(
    labels: torch.Tensor, samples: int, fit_samples: int, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded class-stratified indices of the judged images and of the disjoint images a
    universal patch is fitted on; a set smaller than both is split in their proportion."""
    total = len(labels)
    if fit_samples == 0:
        return stratified_indices(labels, min(samples, total), seed), []
    want = samples + fit_samples
    n_eval = samples if want <= total else max(1, round(total * samples / want))
    chosen = np.asarray(stratified_indices(labels, min(want, total), seed))
    local = stratified_indices(labels[chosen], n_eval, seed)
    judged = chosen[local]
    fit = np.setdiff1d(chosen, judged)
    return judged.tolist(), fit.tolist()


def run_case(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    case: PatchCase,
    profile: PatchProfile,
    *,
    seed: int,
    write: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Optimise and evaluate one case; ``clean_pred`` (len(eval_set),) from the cached pass."""
    dev = model.device
    per_image = profile.attack == "per_image"
    judged, fit = select_images(
        eval_set.labels, profile.samples, 0 if per_image else profile.fit_samples, seed
    )
    x = eval_set.images(judged).to(dev)
    y = eval_set.labels[judged].to(dev)
    _, c, height, width = x.shape
    renderer = PatchRenderer(
        patch_shape(case.area, height, width),
        location=case.location,
        distortion=profile.distortion,
        lighting=profile.lighting,
    )
    s = _case_seed(seed, case)
    settings = {
        "steps": profile.steps,
        "step_size": profile.step_size,
        "optimizer": profile.optimizer,
        "tv_weight": profile.tv_weight,
        "batch_size": profile.batch_size,
        "seed": s,
    }
    label = f"vcheck: patch {profile.attack} {case.label} on {eval_set.name}"
    net = model.module
    per_class = profile.attack == "per_class"
    if per_image:
        progress = Progress(label, profile.steps * len(x), write) if write else None
        attack = PerImagePatchAttack(**settings)
        patches = attack(net, x, y, renderer, progress=progress.update if progress else None)
        n_fit = 0
    else:
        ok = clean_pred[fit] == eval_set.labels[fit].numpy()
        keep = [i for i, good in zip(fit, ok, strict=True) if good] or list(fit)
        total = profile.steps * min(profile.batch_size, len(keep))
        progress = Progress(label, total, write) if write else None
        attack = UniversalPatchAttack(**settings, per_class=per_class)
        patches = attack(
            net,
            eval_set.images(keep).to(dev),
            eval_set.labels[keep].to(dev),
            renderer,
            num_classes=len(model.classes),
            progress=progress.update if progress else None,
        )
        n_fit = len(keep)
    draw = renderer.draw(len(x), height, width, torch.Generator().manual_seed(s + 1))
    chosen = patches[y] if per_class else patches
    adversarial = predict_patched(net, x, chosen, renderer, draw)
    noise = noise_patches(len(x), c, renderer.patch_size, s + 2)
    noisy = predict_patched(net, x, noise, renderer, draw)
    labels = y.cpu().numpy()
    clean = clean_pred[judged]
    adv = adversarial.cpu().numpy()
    fooled = np.flatnonzero((clean == labels) & (adv != labels))[: profile.examples]
    example_images = np.zeros((0, c, height, width), np.uint8)
    if len(fooled):
        sub = [int(i) for i in fooled]
        part = type(draw)(draw.top[sub], draw.left[sub], draw.offsets[sub])
        p = chosen if chosen.shape[0] == 1 else chosen[sub]
        with torch.no_grad():
            shown = renderer(x[sub], p, draw=part).images
        example_images = (shown.cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {
        "labels": labels,
        "clean": clean,
        "adversarial": adv,
        "noise": noisy.cpu().numpy(),
        "patches": patches.cpu().numpy().astype(np.float32),
        "example_index": fooled,
        "example_images": example_images,
        "n_fit": np.asarray(n_fit),
        "patch_size": np.asarray(renderer.patch_size),
    }


def evaluate_case(
    model: ModelUnderTest,
    eval_set: EvalSet,
    clean_pred: np.ndarray,
    case: PatchCase,
    profile: PatchProfile,
    *,
    seed: int,
    cache: ResultCache,
    write: Callable[[str], None] | None = None,
) -> PatchOutcome:
    """:func:`run_case` through the result cache (a warm run reads it back)."""
    import vcheck

    key = cache_key(
        vcheck.__version__,
        "patch",
        model.fingerprint,
        model.cfg.preprocessing_key(),
        eval_set.fingerprint,
        asdict(case),
        profile.settings(),
        seed,
    )

    def valid(arrays) -> bool:
        names = {"labels", "clean", "adversarial", "noise", "patches", "patch_size", "n_fit"}
        names |= {"example_index", "example_images"}
        n = len(arrays.get("labels", ()))
        return names <= set(arrays) and all(len(arrays[k]) == n for k in (*KINDS, "clean"))

    arrays, from_cache = cache.arrays(
        key,
        lambda: run_case(model, eval_set, clean_pred, case, profile, seed=seed, write=write),
        validate=valid,
    )
    if from_cache and write is not None:
        write(f"vcheck: patch {profile.attack} {case.label} on {eval_set.name}: from cache")
    return PatchOutcome(case, arrays, from_cache, tuple(model.classes))
