"""One forward pass per (model, eval set), cached on disk.

The cache key hashes the model fingerprint, its preprocessing, the eval-set fingerprint and
the vcheck version, so any change to weights, transform or data recomputes. Entries go
through :class:`vcheck.cache.ResultCache` (checksummed, atomic, shareable): a damaged or
mismatched entry warns and is recomputed, never trusted and never fatal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vcheck import __version__
from vcheck.cache import ResultCache
from vcheck.cache import cache_key as _digest
from vcheck.data.evalset import EvalSet
from vcheck.models.base import ModelUnderTest
from vcheck.progress import Progress


@dataclass
class Predictions:
    """Logits of one model on one eval set, aligned with ``eval_set.ids``."""

    logits: torch.Tensor  # (N, C) float32, CPU
    labels: torch.Tensor  # (N,) int64
    ids: list[str]
    output_kind: str
    key: str
    seconds: float
    from_cache: bool
    undecodable: tuple[int, ...] = ()  # positions whose file could not be decoded

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def probs(self) -> np.ndarray:
        """(N, C) float64 class probabilities: softmax, or sigmoid for multi-label models."""
        x = self.logits.double()
        p = torch.sigmoid(x) if self.output_kind == "sigmoid" else torch.softmax(x, dim=1)
        return p.numpy()

    def subset(self, indices: np.ndarray) -> Predictions:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return Predictions(
            self.logits[idx],
            self.labels[idx],
            [self.ids[i] for i in indices],
            self.output_kind,
            self.key,
            self.seconds,
            self.from_cache,
        )


@torch.inference_mode()
def forward_logits(
    model: ModelUnderTest,
    eval_set: EvalSet,
    batch_size: int,
    num_workers: int | None = None,
    write: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Run ``model`` over every image of ``eval_set`` in order; (N, C) float32 on the CPU."""
    progress = (
        Progress(f"vcheck: {model.name} on {eval_set.name}", len(eval_set), write)
        if write
        else None
    )
    out = []
    on_gpu = model.device.type == "cuda"
    for batch in eval_set.batches(batch_size, num_workers, pin_memory=on_gpu):
        out.append(model.module(batch.to(model.device, non_blocking=on_gpu)).float().cpu())
        if progress:
            progress.update(len(batch))
    return torch.cat(out) if out else torch.empty(0, model.cfg.num_classes)


def cache_key(model: ModelUnderTest, eval_set: EvalSet) -> str:
    """Everything that determines the logits: weights, preprocessing, samples, version."""
    return _digest(
        "vcheck.predictions",
        __version__,
        model.fingerprint,
        model.cfg.preprocessing_key(),
        eval_set.fingerprint,
        model.cfg.num_classes,
    )


def get_predictions(
    model: ModelUnderTest,
    eval_set: EvalSet,
    cache: ResultCache | None,
    batch_size: int = 256,
    num_workers: int | None = None,
    write: Callable[[str], None] | None = None,
) -> Predictions:
    """Predictions from the cache, or from one forward pass that is then cached."""
    key = cache_key(model, eval_set)
    start = time.perf_counter()
    shape = (len(eval_set), model.cfg.num_classes)

    def compute() -> dict[str, np.ndarray]:
        logits = forward_logits(model, eval_set, batch_size, num_workers, write).numpy()
        bad = np.zeros(len(eval_set), dtype=bool)
        bad[getattr(eval_set, "undecodable", [])] = True
        return {"logits": logits, "undecodable": bad}

    if cache is None:
        entry, from_cache = compute(), False
    else:
        entry, from_cache = cache.arrays(
            key, compute, validate=lambda e: e.get("logits", np.empty(0)).shape == shape
        )
    logits = torch.from_numpy(np.ascontiguousarray(entry["logits"], dtype=np.float32))
    subset = eval_set.extra.get("class_subset")
    if subset is not None:  # ImageNet-A/R: scored on their classes' logits only
        logits = logits[:, torch.as_tensor(subset)].contiguous()
    bad = entry.get("undecodable")
    return Predictions(
        logits,
        eval_set.labels,
        list(eval_set.ids),
        model.cfg.output_kind,
        key,
        time.perf_counter() - start,
        from_cache,
        tuple(int(i) for i in np.flatnonzero(bad)) if bad is not None else (),
    )


def drop_undecodable(preds: Predictions, eval_set: EvalSet) -> tuple[Predictions, EvalSet, str]:
    """Predictions and eval set without the files that could not be decoded, and one line
    saying how many were skipped (their logits came from a black placeholder image)."""
    bad = set(preds.undecodable)
    keep = np.array([i for i in range(len(preds)) if i not in bad], dtype=np.int64)
    example = eval_set.ids[preds.undecodable[0]]
    line = (
        f"vcheck: {eval_set.name}: skipped {len(bad)} of {len(preds)} images that could not "
        f"be decoded (e.g. {example}); --strict fails on them"
    )
    return preds.subset(keep), eval_set.subset(keep.tolist(), eval_set.name), line
