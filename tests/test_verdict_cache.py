"""The verdict cache of the soundness suite serves only what the same code would answer again:
a change to vcheck's verifier code gives fresh verdicts, timeouts and crashes are recomputed,
and an entry of the wrong shape is recomputed instead of breaking every later run."""

import json
import shutil
import warnings
from pathlib import Path

import pytest

from vcheck.soundness import runner
from vcheck.soundness.runner import load_benchmarks, run_verifier
from vcheck.verify.bab import BranchAndBound
from vcheck.verify.external import Result
from vcheck.verify.lirpa import LirpaVerifier

REPO = Path(__file__).resolve().parents[1]
EDGE = "edge_ties_3class"  # two instances, milliseconds to bound


@pytest.fixture(scope="module")
def edge():
    (bench,) = [b for b in load_benchmarks(REPO / "fixtures" / "soundness") if b.name == EDGE]
    return bench


@pytest.fixture
def calls(monkeypatch):
    """Counts the instances the IBP verifier really bounds (cache misses)."""
    seen: list[str] = []
    original = LirpaVerifier.verify

    def counting(self, net, instance, **kwargs):
        seen.append(instance.id)
        return original(self, net, instance, **kwargs)

    monkeypatch.setattr(LirpaVerifier, "verify", counting)
    return seen


def test_a_change_to_the_verifier_code_gives_fresh_verdicts_on_a_warm_cache(
    edge, calls, tmp_path, monkeypatch
):
    code = tmp_path / "code"
    for d in runner.CODE_DIRS:
        shutil.copytree(runner.CODE_ROOT / d, code / d)
    monkeypatch.setattr(runner, "CODE_ROOT", code)
    cache = tmp_path / "verdicts"
    fresh = run_verifier(LirpaVerifier("IBP"), edge, cache)
    cached = run_verifier(LirpaVerifier("IBP"), edge, cache)
    assert len(calls) == 2  # the second run was served from the cache
    # the verdict and the bound, which the suite compares with each planted x*
    assert {k: (r.verdict, r.bound) for k, r in cached.items()} == {
        k: (r.verdict, r.bound) for k, r in fresh.items()
    }
    assert all(isinstance(r.bound, float) for r in cached.values())
    bounds = code / "verify" / "bounds.py"
    bounds.write_text(bounds.read_text() + "\n# a regression in the bound code\n")
    run_verifier(LirpaVerifier("IBP"), edge, cache)
    assert len(calls) == 4  # the changed code bounded both instances again
    assert len(list(cache.glob("*.json"))) == 2


def test_timeouts_are_not_cached(edge, tmp_path):
    cache = tmp_path / "verdicts"
    late = BranchAndBound("IBP", timeout=1e-9)
    first = run_verifier(late, edge, cache)
    assert {r.verdict for r in first.values()} == {"timeout"}
    assert not any(json.loads(p.read_text()) for p in cache.glob("*.json"))


def test_only_final_verdicts_and_refusals_count_as_cacheable():
    assert runner.is_final(Result("unsat")) and runner.is_final(Result("unknown"))
    assert runner.is_final(Result("error", refused=True))
    assert not runner.is_final(Result("error", reason="crashed"))
    assert not runner.is_final(Result("timeout"))


@pytest.mark.parametrize(
    "stored",
    ["{}", "[]", '{"clean_tie": {}}', '{"clean_tie": {"verdict": "timeout", "x": null}}', "{"],
    ids=["empty-object", "list", "empty-entry", "timeout-entry", "truncated"],
)
def test_an_entry_of_the_wrong_shape_is_recomputed_and_repaired(edge, calls, tmp_path, stored):
    cache = tmp_path / "verdicts"
    fresh = run_verifier(LirpaVerifier("IBP"), edge, cache)
    (path,) = cache.glob("*.json")
    path.write_text(stored)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_verifier(LirpaVerifier("IBP"), edge, cache)
    assert {k: r.verdict for k, r in again.items()} == {k: r.verdict for k, r in fresh.items()}
    assert set(json.loads(path.read_text())) == set(fresh)  # repaired in place
    calls.clear()
    run_verifier(LirpaVerifier("IBP"), edge, cache)
    assert calls == []


def test_verifying_writes_progress_lines_and_a_warm_run_none(edge, tmp_path):
    cache, lines = tmp_path / "verdicts", []
    run_verifier(LirpaVerifier("IBP"), edge, cache, write=lines.append, label="IBP", interval=0)
    assert lines[0].startswith(f"vcheck: IBP on {EDGE}: 1/2 (50%)")
    assert lines[-1].startswith(f"vcheck: IBP on {EDGE}: 2/2 (100%)")
    assert lines[-1].endswith("instances/s")
    lines.clear()
    run_verifier(LirpaVerifier("IBP"), edge, cache, write=lines.append, label="IBP")
    assert lines == []  # every verdict from the cache: nothing to wait for
