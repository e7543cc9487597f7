"""Sanity checks of the model's outputs: logits, not probabilities."""

from __future__ import annotations

import sys

import pytest
import torch
from _plugin_runs import ACCURACY, read_json, run_suites

from vcheck.evaluate.sanity import PROBABILITY_LIKE_TOLERANCE, probability_like_rows
from vcheck.predictions import Predictions

pytest_plugins = ["pytester"]


def predictions(logits: torch.Tensor, kind: str = "softmax") -> Predictions:
    n = len(logits)
    return Predictions(
        logits.float(),
        torch.zeros(n, dtype=torch.long),
        [str(i) for i in range(n)],
        kind,
        "key",
        0.0,
        False,
    )


def test_logits_pass_and_their_softmax_fails():
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(0)) * 3
    assert probability_like_rows(predictions(logits)).value == 0.0
    probs = probability_like_rows(predictions(torch.softmax(logits, dim=1)))
    assert probs.value == 1.0 and probs.n == 500
    assert probs.value > PROBABILITY_LIKE_TOLERANCE.value


def test_log_probabilities_are_logits_too():
    logits = torch.randn(200, 10, generator=torch.Generator().manual_seed(1))
    assert probability_like_rows(predictions(torch.log_softmax(logits, dim=1))).value == 0.0


def test_sigmoid_models_are_flagged_when_every_output_is_in_unit_range():
    logits = torch.randn(300, 10, generator=torch.Generator().manual_seed(2)) * 4
    assert probability_like_rows(predictions(logits, "sigmoid")).value < 0.01
    squashed = probability_like_rows(predictions(torch.sigmoid(logits), "sigmoid"))
    assert squashed.value == 1.0


def test_a_few_coincidental_rows_are_tolerated_but_counted():
    logits = torch.randn(1000, 3, generator=torch.Generator().manual_seed(3)) * 5
    logits[:3] = torch.tensor([0.2, 0.3, 0.5])  # rows that happen to look like probabilities
    m = probability_like_rows(predictions(logits))
    assert m.details["probability_like_rows"] == 3
    assert m.value <= PROBABILITY_LIKE_TOLERANCE.value


PROBS_MODEL = '''
"""The bundled MLP with a softmax on top: returns probabilities instead of logits."""
from torch import nn

from vcheck.models.checkpoint import load_weights
from vcheck.models.zoo import FASHION_MNIST_CFG, ZOO


def make(squash=True):
    entry = ZOO["fmnist_mlp"]
    net = entry.build()
    load_weights(net, entry.weights_path, "fmnist_mlp")
    return (nn.Sequential(net, nn.Softmax(dim=1)) if squash else net), FASHION_MNIST_CFG


def make_logits():
    return make(squash=False)
'''


@pytest.mark.slow
def test_a_model_returning_probabilities_fails_the_run_with_the_fix(pytester, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("VCHECK_CACHE_DIR", raising=False)
    pytester.makepyfile(probs_model=PROBS_MODEL)
    common = (ACCURACY, "--max-samples=200", f"--cache-dir={pytester.path / 'cache'}")
    result = run_suites(pytester, *common, "--model=probs_model:make", "-k", "outputs_are_logits")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "FAILED CHECK probability_like_rows on fmnist_test = 1.0000 (n=200) fails the "
            "threshold <= 0.01 (gate=point): 200 of 200 output rows look like probabilities "
            "*drop its final softmax"
        ]
    )
    # The same network without its softmax passes the check.
    only = ("-k", "outputs_are_logits")
    result = run_suites(pytester, *common, "--model=probs_model:make_logits", *only)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (check,) = read_json(pytester.path / "reports" / "probs_model_make_logits.metrics.json")[
        "checks"
    ]
    assert (check["metric"], check["value"]) == ("probability_like_rows", 0.0)
