"""Threshold profiles: which metric must clear which threshold, per suite, from TOML.

Example (``fixtures/profiles/fmnist_cnn.toml``)::

    [accuracy]
    top1 = { min = 0.88 }
    ece = { max = 0.05 }
    class_priors = [0.1, 0.1, ...]          # optional: adds top1_prior_corrected

    [accuracy.slices.footwear]              # a must-pass slice
    classes = ["Sandal", "Sneaker", "Ankle boot"]   # or ids = [...] / ids_file = "x.txt"
    top1 = { min = 0.95 }

Every key is validated against the known metrics, so a typo is a usage error, not a gate
that silently never runs.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcheck.checks import Threshold
from vcheck.errors import InvalidArgument, UnknownNameError

ACCURACY_METRICS = (
    "top1",
    "top5",
    "balanced_accuracy",
    "worst_class_recall",
    "auc_ovr_macro",
    "ece",
    "nll",
    "top1_prior_corrected",
)
SLICE_METRICS = ("top1", "top5", "worst_class_recall", "ece", "nll")
_SLICE_KEYS = ("ids", "ids_file", "classes")


@dataclass(frozen=True)
class SliceSpec:
    """A named subset of an eval set, by sample ids or by classes, with its own thresholds."""

    name: str
    thresholds: dict[str, Threshold]
    ids: frozenset[str] | None = None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AccuracyProfile:
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    class_priors: tuple[float, ...] | None = None
    slices: tuple[SliceSpec, ...] = ()


@dataclass(frozen=True)
class SoundnessProfile:
    """Per-instance verifier budget for the soundness suite."""

    timeout: float = 30.0
    bab_max_domains: int = 50
    model_eps: float = 1 / 255  # L-inf radius in pixel space for the model-under-test checks
    model_samples: int = 100


@dataclass(frozen=True)
class Profile:
    path: Path | None
    sha256: str | None
    accuracy: AccuracyProfile = field(default_factory=AccuracyProfile)
    soundness: SoundnessProfile = field(default_factory=SoundnessProfile)

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None, "sha256": self.sha256}


def parse_threshold(where: str, value: Any) -> Threshold:
    if (
        not isinstance(value, dict)
        or len(value) != 1
        or next(iter(value)) not in ("min", "max")
        or isinstance(next(iter(value.values())), bool)
        or not isinstance(next(iter(value.values())), int | float)
    ):
        raise InvalidArgument(
            f"{where}={value!r}: expected {{ min = NUMBER }} or {{ max = NUMBER }}"
        )
    ((direction, number),) = value.items()
    return Threshold(float(number), direction)


def _thresholds(table: dict[str, Any], allowed: tuple[str, ...], where: str, skip=()) -> dict:
    out = {}
    for key, value in table.items():
        if key in skip:
            continue
        if key not in allowed:
            raise UnknownNameError("metric", key, allowed, f"(in {where})")
        out[key] = parse_threshold(f"{where}.{key}", value)
    return out


def _slice(name: str, table: dict[str, Any], base: Path, classes: tuple[str, ...]) -> SliceSpec:
    where = f"[accuracy.slices.{name}]"
    given = [k for k in _SLICE_KEYS if k in table]
    if len(given) != 1:
        raise InvalidArgument(f"{where}: give exactly one of {', '.join(_SLICE_KEYS)}")
    ids = None
    slice_classes = None
    if "ids" in table:
        ids = frozenset(str(i) for i in table["ids"])
    elif "ids_file" in table:
        path = (base / table["ids_file"]).resolve()
        if not path.is_file():
            raise InvalidArgument(f"{where}: ids_file {path} does not exist")
        lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
        ids = frozenset(ln for ln in lines if ln)
    else:
        slice_classes = tuple(table["classes"])
        for c in slice_classes:
            if c not in classes:
                raise UnknownNameError("class", c, classes, f"(in {where})")
    if ids is not None and not ids:
        raise InvalidArgument(f"{where}: the slice names no sample ids")
    thresholds = _thresholds(table, SLICE_METRICS, where, skip=_SLICE_KEYS)
    return SliceSpec(name, thresholds, ids, slice_classes)


def load_profile(path: Path | None, classes: tuple[str, ...]) -> Profile:
    """Read and validate a profile; ``None`` gives an empty one (every check informational)."""
    if path is None:
        return Profile(None, None)
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"threshold profile {path} does not exist; pass --profile PATH")
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"threshold profile {path} is not valid TOML: {exc}") from None
    for suite in data:
        if suite not in ("accuracy", "soundness"):
            raise UnknownNameError(
                "profile table", suite, ("accuracy", "soundness"), f"(in {path})"
            )
    soundness = _soundness(data.get("soundness", {}), path)
    acc = dict(data.get("accuracy", {}))
    slices_table = acc.pop("slices", {})
    priors = acc.pop("class_priors", None)
    thresholds = _thresholds(acc, ACCURACY_METRICS, f"[accuracy] in {path}")
    if priors is not None:
        if len(priors) != len(classes) or any(not (p > 0) for p in priors):
            raise InvalidArgument(
                f"class_priors in {path}: expected {len(classes)} positive numbers, one per class"
            )
        total = float(sum(priors))
        priors = tuple(float(p) / total for p in priors)
    elif "top1_prior_corrected" in thresholds:
        raise InvalidArgument(f"{path}: top1_prior_corrected needs class_priors in [accuracy]")
    slices = tuple(_slice(n, t, path.parent, classes) for n, t in slices_table.items())
    return Profile(
        path.resolve(),
        hashlib.sha256(raw).hexdigest(),
        AccuracyProfile(thresholds, priors, slices),
        soundness,
    )


def _soundness(table: dict[str, Any], path: Path) -> SoundnessProfile:
    allowed = ("timeout", "bab_max_domains", "model_eps", "model_samples")
    for key, value in table.items():
        if key not in allowed:
            raise UnknownNameError("soundness setting", key, allowed, f"(in [soundness] of {path})")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise InvalidArgument(
                f"[soundness] {key}={value!r} in {path}: expected a positive number"
            )
    return SoundnessProfile(
        timeout=float(table.get("timeout", 30.0)),
        bab_max_domains=int(table.get("bab_max_domains", 50)),
        model_eps=float(table.get("model_eps", 1 / 255)),
        model_samples=int(table.get("model_samples", 100)),
    )
