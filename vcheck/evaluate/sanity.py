"""Model sanity probes that gate every release (specs/accuracy.md, "Sanity checks").

A model left in train mode, a batch-dependent layer or a nondeterministic kernel shows up as
logits that change with batch size or between two identical passes. The probe re-runs a few
images (at most :data:`PROBE_SIZE`) three ways; everything else reads the cached logits.

Every metric downstream applies softmax (or sigmoid) to the model's outputs itself, so a model
that already returns probabilities would be scored on softmax(probabilities): accuracy is
unchanged, but calibration, NLL and AUC are silently wrong. :func:`probability_like_rows`
catches that; it replaces a check that vcheck's own softmax sums to 1, which could not fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from vcheck.cache import ResultCache, cache_key
from vcheck.checks import Measurement, Threshold
from vcheck.data.evalset import EvalSet
from vcheck.models.base import ModelUnderTest
from vcheck.predictions import Predictions
from vcheck.predictions import cache_key as predictions_key

PROBE_SIZE = 64
# Relative to 1 + max |logit|: float32 kernels may reorder sums across batch sizes.
BATCH_TOLERANCE = Threshold(1e-4, "max")
REPEAT_TOLERANCE = Threshold(1e-6, "max")
# Fraction of output rows that look like probabilities; a real logit row almost never does.
PROBABILITY_LIKE_TOLERANCE = Threshold(0.01, "max")
_SUM_TOLERANCE = 1e-3
NON_FINITE_TOLERANCE = Threshold(0.0, "max")


@dataclass(frozen=True)
class ProbeResult:
    n: int
    batch_vs_single: float
    batch_vs_single_argmax_changes: int
    repeat: float
    repeat_argmax_changes: int


@torch.inference_mode()
def probe_model(model: ModelUnderTest, eval_set: EvalSet, size: int = PROBE_SIZE) -> ProbeResult:
    """Run the first ``size`` images as one batch, one at a time, and as one batch again."""
    images = eval_set.images(range(min(size, len(eval_set)))).to(model.device)
    batched = model.module(images).float().cpu()
    singles = torch.cat([model.module(images[i : i + 1]).float().cpu() for i in range(len(images))])
    again = model.module(images).float().cpu()
    scale = 1.0 + float(batched.abs().max()) if batched.numel() else 1.0

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max()) / scale if a.numel() else 0.0

    def flips(a: torch.Tensor, b: torch.Tensor) -> int:
        return int((a.argmax(1) != b.argmax(1)).sum())

    return ProbeResult(
        len(images),
        rel(batched, singles),
        flips(batched, singles),
        rel(batched, again),
        flips(batched, again),
    )


def cached_probe(
    model: ModelUnderTest, eval_set: EvalSet, cache: ResultCache, size: int = PROBE_SIZE
) -> ProbeResult:
    """:func:`probe_model`, stored under the predictions' key (model fingerprint,
    preprocessing, eval set, vcheck version) and the probe size: a warm run reads it."""
    key = cache_key("vcheck.sanity.probe", predictions_key(model, eval_set), size)
    with cache.lock(key):
        hit = cache.load_json(key)
        if isinstance(hit, dict) and set(hit) == {f.name for f in fields(ProbeResult)}:
            return ProbeResult(**hit)
        result = probe_model(model, eval_set, size)
        cache.store_json(key, asdict(result))
        return result


def non_finite_fraction(predictions: Predictions) -> Measurement:
    logits = predictions.logits
    bad = int((~torch.isfinite(logits)).any(dim=1).sum())
    n = len(logits)
    return Measurement(bad / n if n else 0.0, n, details={"non_finite_rows": bad}, exact=True)


def probability_like_rows(predictions: Predictions) -> Measurement:
    """Fraction of output rows that look like probabilities instead of logits.

    A softmax model's row is probability-like when every entry lies in [0, 1] and the row sums
    to 1 (within 1e-3); a sigmoid model's when every entry lies in [0, 1]. Log-probabilities
    (``log_softmax``) are fine: they differ from logits by a per-row constant.
    """
    x = predictions.logits.double()
    in_unit = ((x >= 0) & (x <= 1)).all(dim=1)
    if predictions.output_kind == "softmax":
        like = in_unit & ((x.sum(dim=1) - 1).abs() <= _SUM_TOLERANCE)
        rule = "every entry in [0, 1] and the row sums to 1"
    else:
        like = in_unit
        rule = "every entry in [0, 1]"
    k, n = int(like.sum()), len(x)
    return Measurement(
        k / n if n else 0.0,
        n,
        ci_method="exact",
        details={"probability_like_rows": k, "rule": rule},
        exact=True,
    )
