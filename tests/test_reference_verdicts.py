"""Verifier speed-ups change no verdict: on every shipped network each built-in verifier, run
as the suite runs it, answers what it answered before them (tests/data/reference_verdicts.json,
recorded by scripts/record_reference_verdicts.py before the speed-ups; the graded networks,
added after them, were recorded with the faster path and guard later changes). IBP and CROWN
on every instance; the optimising alpha-CROWN and branch and bound on the first clean and
counterexample instances of each network, to keep this under a minute of CPU.

"unknown" and "timeout" compare as one answer, "no answer": whether the time limit or the
method's own end came first depends on the machine's speed and load (the recording itself
timed out on a loaded machine), while "unsat" and "sat" are what a speed-up must not change."""

import json
from pathlib import Path

import pytest
import torch

from vcheck.soundness.runner import BUILTIN, load_benchmarks, resolve_verifier

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "fixtures" / "soundness"
REFERENCE = json.loads((ROOT / "tests" / "data" / "reference_verdicts.json").read_text())
CHEAP = ("IBP", "CROWN")
NO_ANSWER = {"unknown": "no answer", "timeout": "no answer"}


def _answer(verdict: str) -> str:
    return NO_ANSWER.get(verdict, verdict)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the suite runs the verifiers
    yield
    torch.set_num_threads(threads)


@pytest.mark.trains  # alpha-CROWN optimises
@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.iterdir() if p.is_dir()))
def test_verdicts_equal_the_recorded_ones(name):
    (bench,) = [b for b in load_benchmarks(SHIPPED) if b.name == name]
    reference = REFERENCE[name]
    assert reference.keys() == set(BUILTIN), "re-record with scripts/record_reference_verdicts.py"
    instances = bench.network.instances
    sample = [i for i in instances if i.kind == "clean"][:2]
    sample += [i for i in instances if i.kind == "counterexample"][:2]
    for spec in BUILTIN:
        verifier = resolve_verifier(spec, timeout=30.0, bab_max_domains=50)
        chosen = instances if spec in CHEAP else sample
        got = {i.id: _answer(verifier.verify(bench.network, i).verdict) for i in chosen}
        want = {i.id: _answer(reference[spec][i.id]) for i in chosen}
        assert got == want, f"{spec} on {name}"
