"""Bootstrap intervals of the accuracy metrics are stored with the predictions' cache, so a
warm run does not resample: the same intervals come back, and a change of what they depend
on (samples, resamples, seed, confidence) computes them afresh."""

import numpy as np
import pytest
import torch

from vcheck.cache import ResultCache
from vcheck.evaluate.accuracy import AccuracyEvaluator
from vcheck.predictions import Predictions

METRICS = ("balanced_accuracy", "auc_ovr_macro", "ece", "nll")


def _evaluator(cache, key="model-and-data", n=300, **kw) -> AccuracyEvaluator:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[labels]
    predictions = Predictions(
        torch.tensor(logits, dtype=torch.float32),
        torch.tensor(labels),
        [f"s{i}" for i in range(n)],
        "softmax",
        key,
        0.0,
        False,
    )
    return AccuracyEvaluator(predictions, ("a", "b", "c"), resamples=200, cache=cache, **kw)


def test_a_warm_evaluator_reads_the_intervals_without_resampling(tmp_path, monkeypatch):
    import vcheck.evaluate.accuracy as accuracy

    cache = ResultCache(tmp_path, "intervals")
    cold = {m: _evaluator(cache).measure(m) for m in METRICS}
    assert len(list((tmp_path / "intervals").iterdir())) == len(METRICS)

    def resampling(*args, **kwargs):
        raise AssertionError("a warm evaluator must not resample")

    monkeypatch.setattr(accuracy, "bootstrap_interval", resampling)
    warm = {m: _evaluator(cache).measure(m) for m in METRICS}
    assert warm == cold
    for changed in ({"key": "other-model"}, {"seed": 1}, {"confidence": 0.9}, {"n": 299}):
        with pytest.raises(AssertionError, match="must not resample"):
            _evaluator(cache, **changed).measure("ece")


def test_without_a_cache_every_evaluator_resamples(tmp_path):
    disabled = ResultCache(None, "intervals")
    a = _evaluator(disabled).measure("auc_ovr_macro")
    b = _evaluator(None).measure("auc_ovr_macro")
    assert a == b and a.ci is not None
    assert not list(tmp_path.iterdir())
