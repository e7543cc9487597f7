"""The verifier speed-ups change no verdict: alpha-CROWN stops optimising once every margin
of a box is proved (auto_LiRPA keeps the best bounds, so "proved" cannot flip), compared here
with all iterations on instances of every shipped network. (The range guard before
alpha-CROWN is compared in tests/test_lirpa_guard.py.)"""

from pathlib import Path

import pytest
import torch

from vcheck.soundness.runner import load_benchmarks
from vcheck.verify import bounds
from vcheck.verify.lirpa import LirpaVerifier

SHIPPED = Path(__file__).resolve().parents[1] / "fixtures" / "soundness"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()))
def test_alpha_crown_stopping_once_proved_gives_the_verdicts_of_every_iteration(name, monkeypatch):
    (bench,) = [b for b in load_benchmarks(SHIPPED) if b.name == name]
    clean = [i for i in bench.network.instances if i.kind == "clean"][:2]
    cex = [i for i in bench.network.instances if i.kind == "counterexample"][:1]
    sample = clean + cex
    fast = [LirpaVerifier("alpha-CROWN").verify(bench.network, i) for i in sample]
    monkeypatch.setattr(bounds, "_all_positive", bounds._never)
    full = [LirpaVerifier("alpha-CROWN").verify(bench.network, i) for i in sample]
    assert [(r.verdict, r.refused) for r in fast] == [(r.verdict, r.refused) for r in full]
    for f, a in zip(fast, full, strict=True):  # stopping early only loosens a proved bound
        if f.verdict == "unknown":
            assert f.raw == a.raw  # never proved: every iteration ran, the same bound


def test_the_stop_criterion_is_strict_like_the_verdict():
    assert not bool(bounds._all_positive(torch.tensor([[0.0, 1.0]])))
    assert bool(bounds._all_positive(torch.tensor([[1e-6, 1.0]])))
