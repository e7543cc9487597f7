"""Certified vs attacked robustness of the model under test (specs/soundness.md, last part).

On a seeded stratified sample: clean correctness, PGD (empirical robustness, an upper bound)
and auto_LiRPA margin bounds (certified robustness, a lower bound). Per sample, certified must
imply robust and robust must imply clean; a certified sample that PGD breaks is a bug in the
bounds or the model wrapper, never a property of the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vcheck.data.evalset import EvalSet, stratified_indices
from vcheck.models.base import ModelUnderTest
from vcheck.soundness.attacks import pgd

# CROWN on networks up to this size runs in seconds on 2 cores; larger ones use IBP.
CROWN_MAX_PARAMETERS = 300_000


@dataclass(frozen=True)
class RobustnessSample:
    eps: float
    method: str
    clean: np.ndarray  # (n,) bool
    robust: np.ndarray  # clean and not broken by PGD
    certified: np.ndarray  # every margin lower bound > 0 over the box

    @property
    def n(self) -> int:
        return len(self.clean)


def bound_method(model: ModelUnderTest) -> str:
    params = sum(p.numel() for p in model.module.parameters())
    return "CROWN" if params <= CROWN_MAX_PARAMETERS else "IBP"


def robustness_sample(
    model: ModelUnderTest,
    eval_set: EvalSet,
    *,
    n: int,
    eps: float,
    seed: int,
    pgd_steps: int = 20,
    restarts: int = 2,
) -> RobustnessSample:
    """Measure clean / PGD-robust / certified on ``n`` stratified samples at L-inf ``eps``.

    Raises:
        UnsupportedNetworkError: auto_LiRPA cannot bound this model.
    """
    from vcheck.verify.bounds import margin_lower_bounds

    idx = stratified_indices(eval_set.labels, n, seed)
    x = eval_set.images(idx).to(model.device)
    y = eval_set.labels[idx].to(model.device)
    lower, upper = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    net = model.module
    with torch.no_grad():
        clean = (net(x).argmax(1) == y).cpu().numpy()
    broken = (
        pgd(net, lower, upper, y, rel_step=0.1, steps=pgd_steps, restarts=restarts, seed=seed)
        .found.cpu()
        .numpy()
    )
    method = bound_method(model)
    margins = torch.cat(
        [
            margin_lower_bounds(net, lower[i : i + 32], upper[i : i + 32], y[i : i + 32], method)
            for i in range(0, len(x), 32)
        ]
    )
    certified = (margins > 0).all(dim=1).cpu().numpy()
    return RobustnessSample(eps, method, clean, clean & ~broken, certified)


def cached_robustness_sample(
    model: ModelUnderTest, eval_set: EvalSet, cache_dir: Path | None, **settings
) -> RobustnessSample:
    """:func:`robustness_sample`, stored under ``cache_dir`` by model, data and settings
    (deterministic for a seed, so a warm run need not attack or bound again)."""
    import hashlib
    import json

    if cache_dir is None:
        return robustness_sample(model, eval_set, **settings)
    import vcheck
    from vcheck.soundness.runner import code_fingerprint

    key = hashlib.sha256(
        json.dumps(
            [
                vcheck.__version__,
                code_fingerprint(),  # the bound code: a fix must not read a stale sample
                model.fingerprint,
                model.cfg.preprocessing_key(),
                eval_set.fingerprint,
                sorted(settings.items()),
            ],
            default=str,
        ).encode()
    ).hexdigest()
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return RobustnessSample(
                    float(z["eps"]), str(z["method"]), z["clean"], z["robust"], z["certified"]
                )
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    sample = robustness_sample(model, eval_set, **settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        eps=sample.eps,
        method=sample.method,
        clean=sample.clean,
        robust=sample.robust,
        certified=sample.certified,
    )
    os.replace(tmp, path)
    return sample
