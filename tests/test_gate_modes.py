"""Every ``--gate`` mode end to end through the plugin, on the accuracy suite of the default model.

A threshold placed between an interval's end and the estimate separates the three gates:
``point`` passes it, ``lower`` (the conservative end) fails it, ``upper`` (the optimistic end)
passes it. Without a usable interval an interval gate refuses, never uses the estimate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._plugin_runs import ACCURACY, assert_usage_error, run_to_usage_error

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

N = 300
METRICS = Path("out") / "metrics.json"
# Non-exact metrics with a threshold in the default profile: each needs an interval.
STATISTICAL = {"top1", "top5", "balanced_accuracy", "worst_class_recall", "auc_ovr_macro"}
STATISTICAL |= {"ece", "nll"}


@dataclass(frozen=True)
class Run:
    rc: int
    out: str
    doc: dict

    def check(self, metric: str, slice: str | None = None) -> dict:
        (found,) = (c for c in self.doc["checks"] if (c["metric"], c["slice"]) == (metric, slice))
        return found


def run(cwd: Path, cache: Path, *args: str) -> Run:
    """The accuracy suite in a fresh interpreter (own cwd and HOME, shared prediction cache)."""
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "pytest", str(ACCURACY), f"--cache-dir={cache}", "-p"]
    cmd += ["no:cacheprovider", "--report=out/r.html", f"--metrics-json={METRICS}", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert (cwd / METRICS).is_file(), out
    return Run(proc.returncode, out, json.loads((cwd / METRICS).read_text()))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gate-cache")


@pytest.fixture(scope="module")
def point_run(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Run:
    return run(tmp_path_factory.mktemp("point"), cache, f"--max-samples={N}", "-k", "test_metric")


def test_twenty_samples_under_gate_lower_pass_nothing_on_an_estimate(
    tmp_path: Path, cache: Path
) -> None:
    """The review's case: with 20 samples, AUC used to pass on its point value."""
    r = run(tmp_path, cache, "--max-samples=20", "--gate=lower")
    assert r.rc == pytest.ExitCode.TESTS_FAILED, r.out
    gated = [c for c in r.doc["checks"] if c["threshold"] is not None]
    for c in gated:
        if c["outcome"] == "pass":  # only exact properties, which have no sampling error
            assert c["exact"], c
        if not c["exact"]:
            assert c["ci"] is not None or c["outcome"] == "fail", c
    assert {c["metric"] for c in gated if not c["exact"]} >= STATISTICAL
    refused = {
        c["metric"]: c["details"]["gate_refusal"]
        for c in gated
        if not c["exact"] and c["ci"] is None
    }
    assert set(refused) >= {"auc_ovr_macro", "balanced_accuracy"}, refused
    for metric, why in refused.items():
        assert why.startswith(f"{metric}: too few samples to bootstrap: ")
        assert why.endswith("; use --gate point or drop the threshold")
    summary = f"{len(refused)} checks cannot be gated with --gate lower"
    line = next(x for x in r.out.splitlines() if x.startswith(summary))
    assert all(f"{m} on fmnist_test" in line for m in refused)
    assert "checks of exact properties are compared as measured under --gate lower" in r.out
    assert "FAILED CHECK auc_ovr_macro on fmnist_test = 0.99" in r.out
    assert "cannot be gated against >= 0.98 with --gate lower (auc_ovr_macro: " in r.out


@pytest.mark.parametrize("gate", ["point", "lower", "upper"])
def test_each_gate_uses_its_end_of_the_interval(
    gate: str, tmp_path: Path, cache: Path, point_run: Run
) -> None:
    """Thresholds between each interval's conservative end and the estimate."""
    lines, expected = ["[accuracy]"], {}
    for metric in ("top1", "worst_class_recall", "auc_ovr_macro", "balanced_accuracy"):
        c = point_run.check(metric)
        low = c["ci"][0]
        assert low < c["value"], c
        lines.append(f"{metric} = {{ min = {(low + c['value']) / 2!r} }}")
        expected[metric] = (c["value"], low, c["ci"][1], "min")
    for metric in ("nll",):  # not ECE: BCa corrects its upward bias, below the estimate
        c = point_run.check(metric)
        high = c["ci"][1]
        assert c["value"] < high, c
        lines.append(f"{metric} = {{ max = {(high + c['value']) / 2!r} }}")
        expected[metric] = (c["value"], c["ci"][0], high, "max")
    profile = tmp_path / "between.toml"
    profile.write_text("\n".join(lines) + "\n")

    r = run(tmp_path, cache, f"--max-samples={N}", f"--profile={profile}", f"--gate={gate}")
    assert r.rc == (pytest.ExitCode.TESTS_FAILED if gate == "lower" else pytest.ExitCode.OK)
    for metric, (value, low, high, direction) in expected.items():
        c = r.check(metric)
        assert (c["gate"], c["value"], c["ci"]) == (gate, value, [low, high])
        assert c["outcome"] == ("fail" if gate == "lower" else "pass"), c
        compared = {"point": value, "lower": low, "upper": high}[gate]
        if direction == "max":
            compared = {"point": value, "lower": high, "upper": low}[gate]
        sign = 1 if direction == "min" else -1
        assert c["margin"] == pytest.approx(sign * (compared - c["threshold"]))
    if gate == "lower":
        assert f"FAILED CHECK nll on fmnist_test = {expected['nll'][0]:.4f} [" in r.out


def test_gate_upper_refuses_without_an_interval_too(tmp_path: Path, cache: Path) -> None:
    r = run(tmp_path, cache, "--max-samples=20", "--gate=upper", "-k", "auc or logits")
    auc = r.check("auc_ovr_macro")
    assert (auc["outcome"], auc["ci"], auc["margin"]) == ("fail", None, None)
    assert "cannot be gated against >= 0.98 with --gate upper" in r.out
    finite = r.check("non_finite_fraction")
    assert (finite["exact"], finite["outcome"]) == (True, "pass")


def test_the_confidence_setting_reaches_every_accuracy_interval(
    tmp_path: Path, cache: Path, point_run: Run
) -> None:
    (tmp_path / "vcheck.toml").write_text("confidence = 0.8\n")
    r = run(
        tmp_path, cache, f"--max-samples={N}", "--vcheck-config=vcheck.toml", "-k", "test_metric"
    )
    assert r.doc["settings"]["confidence"] == 0.8
    for metric in STATISTICAL:
        wide, narrow = point_run.check(metric)["ci"], r.check(metric)["ci"]
        assert wide[0] < narrow[0] and narrow[1] <= wide[1], (metric, wide, narrow)
        assert narrow[1] - narrow[0] < wide[1] - wide[0]


def test_too_few_bootstrap_resamples_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", vcheck="bootstrap_resamples = 50\n")
    result = run_to_usage_error(pytester, ACCURACY, "--vcheck-config=vcheck.toml")
    assert_usage_error(result, pytester, "bootstrap_resamples=50: expected an integer >= 100")
