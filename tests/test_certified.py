"""Certified <= robust <= clean on a real zoo model, and the check catches unsound bounds."""

from pathlib import Path

import pytest
import torch

from vcheck.data.fashion_mnist import load_fashion_mnist
from vcheck.evaluate import certified as cert
from vcheck.models import resolve_model


@pytest.fixture(scope="module")
def mlp_and_data(tmp_path_factory):
    model = resolve_model("fmnist_mlp").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, tmp_path_factory.mktemp("cache"))
    return model, data


def test_certified_implies_robust_implies_clean_on_the_mlp(mlp_and_data):
    model, data = mlp_and_data
    s = cert.robustness_sample(model, data, n=60, eps=2 / 255, seed=0)
    assert s.method == "CROWN" and s.n == 60
    assert not (s.certified & ~s.robust).any()
    assert not (s.robust & ~s.clean).any()
    assert 0 < s.certified.sum() <= s.robust.sum() < s.clean.sum() <= 60


def test_unsound_bounds_show_up_as_certified_but_broken(mlp_and_data, monkeypatch):
    import vcheck.verify.bounds as bounds

    model, data = mlp_and_data

    def everything_verified(net, lower, upper, label, method, **kw):
        return torch.ones(len(lower), 9)  # claims every margin is positive

    monkeypatch.setattr(bounds, "margin_lower_bounds", everything_verified)
    s = cert.robustness_sample(model, data, n=60, eps=8 / 255, seed=0)
    assert (s.certified & ~s.robust).sum() > 0  # what the suite's gate counts


def test_samples_are_cached_by_model_data_and_settings(mlp_and_data, tmp_path, monkeypatch):
    model, data = mlp_and_data
    first = cert.cached_robustness_sample(model, data, tmp_path, n=30, eps=1 / 255, seed=0)
    monkeypatch.setattr(cert, "robustness_sample", lambda *a, **k: pytest.fail("recomputed"))
    again = cert.cached_robustness_sample(model, data, tmp_path, n=30, eps=1 / 255, seed=0)
    assert (again.certified == first.certified).all() and again.method == first.method
    assert len(list(Path(tmp_path).glob("*.npz"))) == 1
