"""One forward pass per (model, eval set), cached on disk.

The cache key hashes the model fingerprint, its preprocessing, the eval-set fingerprint and
the vcheck version, so any change to weights, transform or data recomputes. Entries are
written atomically (temp file + rename); an unreadable or mismatched entry warns and is
recomputed, never trusted and never fatal.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vcheck import __version__
from vcheck.data.evalset import EvalSet
from vcheck.errors import VcheckWarning
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
    num_workers: int = 0,
    write: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Run ``model`` over every image of ``eval_set`` in order; (N, C) float32 on the CPU."""
    progress = (
        Progress(f"vcheck: {model.name} on {eval_set.name}", len(eval_set), write)
        if write
        else None
    )
    out = []
    for batch in eval_set.batches(batch_size, num_workers):
        out.append(model.module(batch.to(model.device)).float().cpu())
        if progress:
            progress.update(len(batch))
    return torch.cat(out) if out else torch.empty(0, model.cfg.num_classes)


def cache_key(model: ModelUnderTest, eval_set: EvalSet) -> str:
    h = hashlib.sha256()
    for part in (
        "vcheck.predictions",
        __version__,
        model.fingerprint,
        model.cfg.preprocessing_key(),
        eval_set.fingerprint,
        str(model.cfg.num_classes),
    ):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


class PredictionCache:
    """Logit tensors under ``root``, one ``<key>.pt`` file each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, n: int, num_classes: int) -> torch.Tensor | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            logits = entry["logits"]
            if entry.get("key") != key or tuple(logits.shape) != (n, num_classes):
                raise ValueError(f"shape {tuple(logits.shape)} for ({n}, {num_classes})")
            return logits
        except Exception as exc:
            warnings.warn(
                f"vcheck: ignoring unreadable prediction cache entry {path} ({exc}); recomputing",
                VcheckWarning,
                stacklevel=2,
            )
            path.unlink(missing_ok=True)
            return None

    def store(self, key: str, logits: torch.Tensor) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"key": key, "logits": logits.contiguous()}, f)
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def get_predictions(
    model: ModelUnderTest,
    eval_set: EvalSet,
    cache: PredictionCache | None,
    batch_size: int = 256,
    num_workers: int = 0,
    write: Callable[[str], None] | None = None,
) -> Predictions:
    """Predictions from the cache, or from one forward pass that is then cached."""
    key = cache_key(model, eval_set)
    start = time.perf_counter()
    logits = cache.load(key, len(eval_set), model.cfg.num_classes) if cache else None
    from_cache = logits is not None
    if logits is None:
        logits = forward_logits(model, eval_set, batch_size, num_workers, write)
        if cache:
            cache.store(key, logits)
    return Predictions(
        logits,
        eval_set.labels,
        list(eval_set.ids),
        model.cfg.output_kind,
        key,
        time.perf_counter() - start,
        from_cache,
    )
