"""EvalSet: the images a suite evaluates, with ids, labels and a fingerprint.

Images are produced on demand as float [0, 1] NCHW tensors at the model's input size, so a
50,000-image folder never has to sit in memory; an in-memory set slices a tensor instead.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vcheck.errors import VcheckWarning

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class EvalSet:
    """Base: ids, labels and fingerprint; subclasses say how images are read.

    ``fingerprint`` identifies the exact samples (content or file list), so it keys the
    prediction cache together with the model fingerprint.
    """

    name: str
    ids: list[str]
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    fingerprint: str
    source: str
    label_sets: list[list[int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def metadata(self) -> pd.DataFrame:
        """One row per sample: id, label, class name, and the attributes of the set's metadata
        table when it has one (:mod:`vcheck.data.metadata`)."""
        import pandas as pd

        labels = self.labels.numpy()
        frame = pd.DataFrame(
            {"id": self.ids, "label": labels, "class_name": [self.classes[i] for i in labels]}
        )
        attributes = self.extra.get("attributes")
        return frame if attributes is None else frame.join(attributes, on="id")

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        """Images at ``indices`` as a float [0, 1] NCHW tensor."""
        raise NotImplementedError

    def batches(
        self, batch_size: int, num_workers: int | None = None, pin_memory: bool = False
    ) -> Iterator[torch.Tensor]:
        """All images in order, ``batch_size`` at a time (pinned for a GPU copy if asked)."""
        raise NotImplementedError

    def subset(self, indices: Sequence[int], name: str | None = None) -> EvalSet:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "n": len(self),
            "fingerprint": self.fingerprint,
            "source": self.source,
        }

    def _subset_fields(self, indices: Sequence[int], name: str | None) -> dict[str, Any]:
        idx = [int(i) for i in indices]
        h = hashlib.sha256(self.fingerprint.encode())
        h.update(np.asarray(idx, dtype=np.int64).tobytes())
        return {
            "name": name or self.name,
            "ids": [self.ids[i] for i in idx],
            "labels": self.labels[idx],
            "classes": self.classes,
            "fingerprint": h.hexdigest(),
            "source": f"{self.source} [{len(idx)} of {len(self)}]",
            "label_sets": [self.label_sets[i] for i in idx] if self.label_sets else None,
            "extra": dict(self.extra),
        }


@dataclass
class TensorEvalSet(EvalSet):
    """An eval set held in memory as uint8 (N, C, H, W); converted to float per batch."""

    pixels: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.uint8))

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        return self.pixels[list(indices)].float().div_(255)

    def batches(
        self, batch_size: int, num_workers: int | None = None, pin_memory: bool = False
    ) -> Iterator[torch.Tensor]:
        for start in range(0, len(self), batch_size):
            yield self.pixels[start : start + batch_size].float().div_(255)

    def subset(self, indices: Sequence[int], name: str | None = None) -> TensorEvalSet:
        return TensorEvalSet(
            **self._subset_fields(indices, name), pixels=self.pixels[list(indices)]
        )


class _FileImages(Dataset):
    """Decodes one file per item; a file that cannot be decoded gives a black image and
    ``ok=False`` (when the image size is known), so one bad file does not stop the pass."""

    def __init__(self, paths: Sequence[str], transform: Any, size: tuple | None = None) -> None:
        self.paths, self.transform, self.size = list(paths), transform, size

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            return self.transform(im)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        try:
            return self.load(i), True
        except (OSError, ValueError, SyntaxError):  # PIL's errors for damaged files
            if self.size is None:
                raise
            return torch.zeros(self.size), False


@dataclass
class FileEvalSet(EvalSet):
    """An eval set read from image files through a torchvision transform.

    Files that fail to decode during :meth:`batches` are listed (positions) in
    :attr:`undecodable` after the pass; the caller drops them (see vcheck.predictions).
    """

    paths: list[str] = field(default_factory=list)
    transform: Any = None
    input_size: tuple[int, int, int] | None = None
    undecodable: list[int] = field(default_factory=list)

    def _dataset(self) -> _FileImages:
        return _FileImages(self.paths, self.transform, self.input_size)

    def images(self, indices: Sequence[int]) -> torch.Tensor:
        ds = self._dataset()
        return torch.stack([ds[int(i)][0] for i in indices])

    def batches(
        self, batch_size: int, num_workers: int | None = None, pin_memory: bool = False
    ) -> Iterator[torch.Tensor]:
        """Decoding and resizing run in ``num_workers`` processes (None: one per CPU core, up
        to 8, when there is more than one batch); memory stays at a few batches whatever the
        number of files."""
        if num_workers is None:
            num_workers = default_workers(len(self), batch_size)
        self.undecodable = []
        loader = DataLoader(
            self._dataset(),
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            prefetch_factor=2 if num_workers else None,
            persistent_workers=False,
        )
        start = 0
        for images, ok in loader:
            self.undecodable += [start + int(i) for i in torch.nonzero(~ok).flatten()]
            start += len(ok)
            yield images

    def subset(self, indices: Sequence[int], name: str | None = None) -> FileEvalSet:
        return FileEvalSet(
            **self._subset_fields(indices, name),
            paths=[self.paths[int(i)] for i in indices],
            transform=self.transform,
            input_size=self.input_size,
        )


def default_workers(n: int, batch_size: int) -> int:
    """Decoding processes for ``n`` files: none for a single batch (forking costs more than
    it saves), else one per available core, at most 8."""
    if n <= batch_size:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 8)


def stratified_indices(labels: torch.Tensor, n: int, seed: int) -> list[int]:
    """A seeded, class-stratified choice of ``n`` indices (sorted), via scikit-learn.

    Falls back to a seeded uniform choice when some class is too small to stratify.
    """
    total = len(labels)
    if n >= total:
        return list(range(total))
    y = labels.numpy()
    try:
        from sklearn.model_selection import train_test_split  # scikit-learn: only when subsetting

        chosen, _ = train_test_split(np.arange(total), train_size=n, stratify=y, random_state=seed)
    except ValueError as exc:  # fewer samples than classes, or a class with a single member
        warnings.warn(
            f"vcheck: cannot stratify {n} of {total} samples by class ({exc}); "
            "taking a seeded uniform subset instead",
            VcheckWarning,
            stacklevel=2,
        )
        chosen = np.random.default_rng(seed).choice(total, size=n, replace=False)
    return sorted(int(i) for i in chosen)
