"""The verifier-soundness suite end to end, as a user runs it: sound verifiers pass on the
shipped benchmark, a box-shrinking verifier fails naming the instance, the verifier and x*."""

import json
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SOUNDNESS = REPO / "suites" / "test_verifier_soundness.py"
BENCH = "mlp_4x64_eps0.02"
METRICS = Path("reports") / "fmnist_cnn.metrics.json"

MUTANT = '''
from vcheck.verify.lirpa import LirpaVerifier


class ShrunkBoxIBP:
    """A buggy verifier: bounds the box shrunk to 98% of eps around its centre."""

    def verify(self, instance):
        inner = LirpaVerifier("IBP")
        c = (instance.lower + instance.upper) / 2
        lower, upper = c - 0.98 * (c - instance.lower), c + 0.98 * (instance.upper - c)
        import dataclasses
        return inner.verify(self.net, dataclasses.replace(instance, lower=lower, upper=upper))


class WithNet(ShrunkBoxIBP):
    def verify(self, net, instance):
        self.net = net
        return super().verify(instance)


BUGGY = WithNet()
'''


def run(pytester, *args, select=BENCH):
    return pytester.runpytest_subprocess(
        SOUNDNESS,
        "-p",
        "no:cacheprovider",
        f"--soundness-dir={REPO / 'fixtures' / 'soundness'}",
        "-k",
        select,
        *args,
        timeout=600,
    )


def test_sound_verifiers_pass_and_rates_are_reported(pytester):
    result = run(pytester, "--verifier=IBP", "--verifier=CROWN")
    assert result.ret == 0, result.stdout.str()
    # By default the first 3 instances of each kind per network, said once.
    result.stdout.fnmatch_lines(
        ["vcheck: soundness on * of the benchmark's * instances (the first 3 of each kind*"]
    )
    # Not a terminal: a progress line per verifier and network at the start and at the end.
    assert result.stdout.str().count(f"vcheck: IBP on {BENCH}: ") == 2
    result.stdout.fnmatch_lines([f"vcheck: CROWN on {BENCH}: 6/6 (100%) * instances/s"])
    checks = json.loads((pytester.path / METRICS).read_text())["checks"]
    by_metric = {c["metric"]: c for c in checks}
    for v in ("IBP", "CROWN"):
        assert by_metric[f"unsat_on_counterexample[{v}]"]["value"] == 0
        rate = by_metric[f"verified_rate[{v}]"]
        assert rate["outcome"] == "info" and 0 <= rate["value"] <= 1
        # Sound bounds lie below every planted x* (0.05 deep here; IBP's tightest is 0.06).
        excess = by_metric[f"bound_excess_over_counterexample[{v}]"]
        assert excess["outcome"] == "info" and excess["value"] < -0.005
    # IBP proves every clean instance of this interval-trained host.
    assert by_metric["verified_rate[IBP]"]["value"] == 1.0
    assert by_metric["invalid_or_exposed_counterexamples"]["value"] == 0


def test_a_box_shrinking_verifier_is_caught_naming_instance_verifier_and_x_star(pytester):
    pytester.makepyfile(buggy_verifiers=textwrap.dedent(MUTANT))
    result = run(
        pytester,
        "--verifier=buggy_verifiers:BUGGY",
        "--soundness-instances=all",
        select=f"{BENCH} and no_unsat",
    )
    assert result.ret == 1
    assert "soundness on" not in result.stdout.str()  # every instance: nothing to say
    result.stdout.fnmatch_lines(
        [
            "*unsat_on_counterexample[[]buggy_verifiers:BUGGY[]] on mlp_4x64_eps0.02 = 10.0000*"
            "fails the threshold <= 0*said unsat on cex_*but x* = [[]*[]] is a counterexample*",
        ]
    )
    manifest = json.loads((REPO / "fixtures/soundness" / BENCH / "manifest.json").read_text())
    cex_ids = {i["id"] for i in manifest["instances"] if i["kind"] == "counterexample"}
    checks = json.loads((pytester.path / METRICS).read_text())["checks"]
    (check,) = [c for c in checks if c["metric"].startswith("unsat_on_counterexample")]
    assert set(check["details"]["instances"]) == cex_ids


MUTANTS = """
from vcheck.verify.bab import BranchAndBound
from vcheck.verify.lirpa import LirpaVerifier
from vcheck.verify.mutants import (
    DropDomains, DropTarget, NonStrictComparison, NumericalSlack, ShrinkBox, ShrinkIntermediate,
)

SHRINK_BOX = ShrinkBox(LirpaVerifier("IBP"), 0.98)
SHRINK_INTERMEDIATE = ShrinkIntermediate("CROWN", 0.9)
DROP_DOMAINS = DropDomains(BranchAndBound("IBP"), 0.5)
NON_STRICT = NonStrictComparison("CROWN")
DROP_TARGET = DropTarget(LirpaVerifier("CROWN"))
NUMERICAL_SLACK = NumericalSlack(1e-3, "CROWN")
"""
GRADED = "graded_cnn_1conv_1x5x5_eps0.02"


def test_every_synthetic_bug_fails_the_suite_on_the_shipped_benchmark_naming_an_instance(
    pytester,
):
    pytester.makepyfile(mutants=MUTANTS)
    names = [
        "SHRINK_BOX",
        "SHRINK_INTERMEDIATE",
        "DROP_DOMAINS",
        "NON_STRICT",
        "DROP_TARGET",
        "NUMERICAL_SLACK",
    ]
    result = run(
        pytester,
        *[f"--verifier=mutants:{n}" for n in names],
        select=f"({BENCH} or edge_ties_3class or {GRADED}) and (no_unsat or clean_instances)",
    )
    assert result.ret == 1
    checks = json.loads((pytester.path / METRICS).read_text())["checks"]
    failed = {}
    for c in checks:
        if c["outcome"] == "fail":
            name = c["metric"].split("[mutants:")[1].rstrip("]")
            failed.setdefault(name, []).append(c)
    assert sorted(failed) == sorted(names)
    for name, fails in failed.items():
        assert any(c["details"]["instances"] for c in fails), name
    # The two bugs the needle networks cannot show are caught on the hand-built one.
    for name, instance in (("NON_STRICT", "clean_tie"), ("DROP_TARGET", "clean_class_1_only")):
        edge = [c for c in failed[name] if c["eval_set"] == "edge_ties_3class"]
        assert edge and edge[0]["details"]["instances"] == [instance]
    # A slack of 1e-3 misses the MLP's needles (depth 0.05) and is caught on the graded x* at
    # depth 1e-4, where CROWN's bound is nearly exact.
    slack = [c for c in failed["NUMERICAL_SLACK"] if c["metric"].startswith("unsat_on_counter")]
    assert [c["eval_set"] for c in slack] == [GRADED]


OVERSHOOT = """
import dataclasses

from vcheck.verify.lirpa import LirpaVerifier


class Overshoot:
    \"\"\"CROWN with every bound raised by 5e-5: unsound, yet under the graded network's
    shallowest depth (1e-4), so no verdict changes.\"\"\"

    def verify(self, net, instance):
        r = LirpaVerifier("CROWN").verify(net, instance)
        return dataclasses.replace(r, bound=r.bound + 5e-5)


OVERSHOOT = Overshoot()
"""


def test_a_bound_above_a_planted_counterexample_is_reported_though_no_verdict_changes(pytester):
    pytester.makepyfile(overshoot=OVERSHOOT)
    result = run(
        pytester,
        "--verifier=overshoot:OVERSHOOT",
        select=f"{GRADED} and (stay_below or no_unsat)",
    )
    assert result.ret == 0, result.stdout.str()  # informational: the verdicts are all sound
    checks = checks_of(pytester)
    excess = checks[("bound_excess_over_counterexample[overshoot:OVERSHOOT]", GRADED)]
    assert excess["outcome"] == "info" and 4e-5 < excess["value"] < 6e-5
    assert "above the margin at its x*" in excess["details"]["note"]
    assert checks[("unsat_on_counterexample[overshoot:OVERSHOOT]", GRADED)]["value"] == 0


def test_an_unsound_unsat_that_arrives_after_the_timeout_still_fails(pytester):
    pytester.makepyfile(
        late="from vcheck.verify.lirpa import LirpaVerifier\n"
        "from vcheck.verify.mutants import ShrinkBox\n"
        "LATE = ShrinkBox(LirpaVerifier('IBP', timeout=1e-9), 0.98)\n"
    )
    result = run(pytester, "--verifier=late:LATE", select=f"{BENCH} and no_unsat")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*unsat_on_counterexample[[]late:LATE[]]*= 3.0000*"])


def test_builtin_verdicts_are_cached_and_reused(tmp_path, monkeypatch):
    from vcheck.soundness.runner import load_benchmarks, run_verifier
    from vcheck.verify.lirpa import LirpaVerifier

    (bench,) = [b for b in load_benchmarks(REPO / "fixtures" / "soundness") if b.name == BENCH]
    first = run_verifier(LirpaVerifier("IBP"), bench, tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 1

    def must_not_run(self, net, instance, **kwargs):
        raise AssertionError("verified again despite a cached verdict")

    monkeypatch.setattr(LirpaVerifier, "verify", must_not_run)
    second = run_verifier(LirpaVerifier("IBP"), bench, tmp_path)
    assert {k: r.verdict for k, r in second.items()} == {k: r.verdict for k, r in first.items()}
    with pytest.raises(AssertionError):  # other settings, other key: not served from the cache
        run_verifier(LirpaVerifier("CROWN"), bench, tmp_path)


def checks_of(pytester) -> dict[str, dict]:
    return {
        (c["metric"], c["eval_set"]): c
        for c in json.loads((pytester.path / METRICS).read_text())["checks"]
    }


def test_a_verifier_that_never_answers_fails_the_suite(pytester):
    false = "cmd:/bin/false {onnx} {vnnlib} {timeout} {result}"
    result = run(pytester, f"--verifier={false}", "-q", "-q", select=f"{BENCH} and answered")
    assert result.ret == 1
    assert "instances/s" not in result.stdout.str()  # -q -q: no progress lines
    check = checks_of(pytester)[(f"unanswered[{false}]", BENCH)]
    assert check["outcome"] == "fail" and check["value"] == 1.0
    assert "exit code 1" in check["details"]["note"]


ONE_TIMEOUT = '''
class OneTimeout:
    """Answers "unknown" everywhere but one instance, where it times out."""

    def verify(self, instance):
        return "timeout" if instance.id == FIRST else "unknown"


import json, pathlib
FIRST = json.loads(pathlib.Path(MANIFEST).read_text())["instances"][0]["id"]
VERIFIER = OneTimeout()
'''


@pytest.mark.parametrize("strict", [False, True])
def test_unanswered_share_is_a_profile_fraction_and_none_under_strict(pytester, strict):
    manifest = REPO / "fixtures/soundness" / BENCH / "manifest.json"
    pytester.makepyfile(one_timeout=f"MANIFEST = {str(manifest)!r}\n" + ONE_TIMEOUT)
    args = [
        "--verifier=one_timeout:VERIFIER",
        "--soundness-instances=all",
        *(["--strict"] if strict else []),
    ]
    result = run(pytester, *args, select=f"{BENCH} and answered")
    check = checks_of(pytester)[("unanswered[one_timeout:VERIFIER]", BENCH)]
    assert check["value"] == pytest.approx(1 / 20)  # 1 of 20 instances
    assert (result.ret, check["outcome"]) == ((1, "fail") if strict else (0, "pass"))


def test_a_refusal_by_design_is_reported_as_a_refusal_not_as_unanswered(pytester):
    sigmoid = "cnn_sigmoid_1x5x5_eps0.02"
    result = run(pytester, "--verifier=CROWN", select=f"{sigmoid} and answered")
    assert result.ret == 0, result.stdout.str()
    checks = checks_of(pytester)
    assert checks[("unanswered[CROWN]", sigmoid)]["value"] == 0
    refused = checks[("refused[CROWN]", sigmoid)]
    assert refused["value"] == 1.0 and refused["outcome"] == "info"
    assert "bounds refused" in refused["details"]["note"]


UNSOUND_BOUNDS = """
import pytest
import torch


@pytest.hookimpl
def pytest_configure(config):
    import vcheck.verify.bounds as bounds

    def slack(net, lower, upper, label, method, **kw):
        # An off-by-a-margin bug: every margin bound raised by 5 logits.
        return real(net, lower, upper, label, method, **kw) + 5.0

    real = bounds.margin_lower_bounds
    bounds.margin_lower_bounds = slack
"""


def test_an_unsound_bound_fails_the_control_model_check(pytester):
    """The model under test (IBP on fmnist_cnn) certifies nothing, so only the control shows
    that the bound path broke: its certified samples include ones PGD breaks."""
    pytester.makepyfile(unsound_bounds=UNSOUND_BOUNDS)
    cache = f"--cache-dir={pytester.path / 'cache'}"  # no sound sample from another run
    result = run(pytester, "-p", "unsound_bounds", cache, select="control")
    assert result.ret == 1, result.stdout.str()
    checks = checks_of(pytester)
    broken = checks[("control_certified_but_not_robust", "fmnist_test")]
    assert broken["outcome"] == "fail" and broken["value"] > 0
    result.stdout.fnmatch_lines(["*control_certified_but_not_robust*fails the threshold <= 0*"])
