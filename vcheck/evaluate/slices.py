"""Image-derived slices of any eval set: lighting, object size, object brightness.

The per-image measures (:mod:`vcheck.functional.image_slices`) are computed once per eval set
and cached (``result_cache("slices")``, keyed by the eval-set fingerprint, the model's input
preprocessing, which fixes the pixels measured, and the foreground threshold); bin edges are
applied afterwards, so changing them in the profile recomputes nothing.

Default bins:

- any domain: Wake Vision's. Lighting dark < 85 <= normal < 170 <= bright (mean gray level
  on 0-255); object size far < 0.1 <= mid < 0.6 <= near (Wake Vision's person-box area
  fraction, applied here to the foreground area).
- Fashion-MNIST: Wake Vision's edges leave groups nearly empty there (measured on the 10,000
  test images: lighting 6,442 dark / 3,544 normal / 14 bright; object size 7 far / 8,101
  mid / 1,892 near), so its slices have their own edges, near the terciles of the test set
  (lighting 54.9 and 87.6, object size 0.367 and 0.543, object brightness 143.0 and 183.1),
  with names that say what they are. They are properties of the pictures (every garment is
  centred and scaled to fill the 28x28 frame on a black background), not of people:

  - ``lighting``: mean gray level, dark < 55 <= dim < 85 <= normal (Wake Vision's normal
    and bright, 85 and up); 3,353 / 3,089 / 3,558 test images;
  - ``object_size``: fraction of the frame the garment covers, small < 0.35 <= medium <
    0.55 <= large; 3,025 / 3,806 / 3,169;
  - ``object_brightness``: mean gray level of the garment itself, dark < 145 <= medium <
    185 <= light; 3,465 / 3,399 / 3,136.

  Lighting and object size follow the class closely (sandals and sneakers are small and
  dark, coats and pullovers large), so their accuracy gaps mix the slice with class
  difficulty; object brightness varies within every class.

Public names: SliceBins, DEFAULT_SLICES, default_slices, slice_statistics, slice_groups.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vcheck import __version__
from vcheck.cache import ResultCache, cache_key
from vcheck.data.evalset import EvalSet
from vcheck.functional.image_slices import MEASURES, assign_bins, image_statistics

FOREGROUND_THRESHOLD = 0.1  # gray-level difference from the background, fraction of 0-255


@dataclass(frozen=True)
class SliceBins:
    """One image-derived slice: its measure, bin edges and group names."""

    measure: str
    edges: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"Expected measure in {MEASURES}, but got {self.measure!r}")
        if len(self.labels) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} labels")


WAKE_VISION = {
    "lighting": SliceBins("lighting", (85.0, 170.0), ("dark", "normal", "bright")),
    "object_size": SliceBins("object_size", (0.1, 0.6), ("far", "mid", "near")),
    "object_brightness": SliceBins("object_brightness", (85.0, 170.0), ("dark", "medium", "light")),
}
DEFAULT_SLICES: dict[str, dict[str, SliceBins]] = {
    "fashion_mnist": {
        "lighting": SliceBins("lighting", (55.0, 85.0), ("dark", "dim", "normal")),
        "object_size": SliceBins("object_size", (0.35, 0.55), ("small", "medium", "large")),
        "object_brightness": SliceBins(
            "object_brightness", (145.0, 185.0), ("dark", "medium", "light")
        ),
    },
}
_GENERIC = ("lighting", "object_size")  # what a domain without its own defaults evaluates
NO_FOREGROUND = "no foreground"


def default_slices(domain: str) -> dict[str, SliceBins]:
    """The slices a domain evaluates when the profile does not list them."""
    if domain in DEFAULT_SLICES:
        return dict(DEFAULT_SLICES[domain])
    return {name: WAKE_VISION[name] for name in _GENERIC}


def domain_bins(domain: str, measure: str) -> SliceBins:
    """Default bins of ``measure`` in ``domain`` (Wake Vision's where it has none)."""
    return DEFAULT_SLICES.get(domain, {}).get(measure, WAKE_VISION[measure])


def slice_statistics(
    eval_set: EvalSet,
    cache: ResultCache | None,
    preprocessing: str,
    batch_size: int = 1024,
    write: Callable[[str], None] | None = None,
) -> tuple[dict[str, np.ndarray], bool]:
    """``(measures, from_cache)``: every :data:`MEASURES` value of every image, cached."""
    key = cache_key(
        "vcheck.slices", __version__, eval_set.fingerprint, preprocessing, FOREGROUND_THRESHOLD
    )

    def compute() -> dict[str, np.ndarray]:
        parts = [
            image_statistics(batch.numpy(), FOREGROUND_THRESHOLD)
            for batch in eval_set.batches(batch_size)
        ]
        if write is not None:
            write(f"vcheck: image slices of {eval_set.name}: {len(eval_set)} images measured")
        return {m: np.concatenate([p[m] for p in parts]) for m in MEASURES}

    if cache is None:
        return compute(), False
    n = len(eval_set)
    return cache.arrays(
        key, compute, validate=lambda e: all(np.shape(e.get(m)) == (n,) for m in MEASURES)
    )


def slice_groups(values: np.ndarray, bins: SliceBins) -> tuple[list[str], tuple[str, ...]]:
    """Group label of every image, and the groups in order (a "no foreground" group last
    when some image has none: its object measures are undefined)."""
    codes = assign_bins(values, bins.edges)
    names = list(bins.labels)
    order = tuple(names) + ((NO_FOREGROUND,) if (codes < 0).any() else ())
    return [names[c] if c >= 0 else NO_FOREGROUND for c in codes], order
