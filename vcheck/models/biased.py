"""The training subset of ``fmnist_biased``: Fashion-MNIST's train split without nearly every
dark-toned garment, so that the fairness suite has a model it must fail.

The slice is the suite's own ``object_brightness`` slice with Fashion-MNIST's default bins
(:mod:`vcheck.evaluate.slices`): "dark" garments have a mean gray level below 145 over their
foreground pixels. That slice spans every class (about a third of each split), so removing it
leaves every class in training and biases the model against a property of the pictures, not
against a class. A seeded 1% of the slice is kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcheck.data.evalset import TensorEvalSet
from vcheck.evaluate.slices import DEFAULT_SLICES, FOREGROUND_THRESHOLD, slice_groups
from vcheck.functional.image_slices import image_statistics

SLICE = "object_brightness"
GROUP = "dark"
KEEP_FRACTION = 0.01


def without_most_of_slice(
    train_set: TensorEvalSet, seed: int, chunk: int = 5000
) -> tuple[TensorEvalSet, dict[str, Any]]:
    """``train_set`` minus all but a seeded ``KEEP_FRACTION`` of the slice, and a record of
    what was dropped (for the model card)."""
    bins = DEFAULT_SLICES["fashion_mnist"][SLICE]
    values = np.concatenate(
        [
            image_statistics(train_set.pixels[i : i + chunk].numpy() / 255.0, FOREGROUND_THRESHOLD)[
                bins.measure
            ]
            for i in range(0, len(train_set), chunk)
        ]
    )
    groups, _ = slice_groups(values, bins)
    in_slice = np.flatnonzero(np.asarray(groups) == GROUP)
    rng = np.random.default_rng(seed)
    kept_of_slice = in_slice[rng.random(len(in_slice)) < KEEP_FRACTION]
    keep = np.setdiff1d(np.arange(len(train_set)), np.setdiff1d(in_slice, kept_of_slice))
    note = {
        "slice": f"{SLICE}={GROUP}",
        "definition": f"mean foreground gray level < {bins.edges[0]:g} on 0-255",
        "slice_in_train": len(in_slice),
        "slice_kept": len(kept_of_slice),
        "removed": len(in_slice) - len(kept_of_slice),
        "keep_fraction": KEEP_FRACTION,
    }
    return train_set.subset(keep.tolist()), note
