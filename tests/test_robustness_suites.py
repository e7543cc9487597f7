"""End to end: ``pytest suites/test_adversarial.py suites/test_corruptions.py
--model=fmnist_cnn`` as a user runs it, in a fresh interpreter, on a small sample.

One cold run with the shipped profile checks what a user sees: every check of both suites
with its n, interval and gate, the sanity gates passing, the report data (robust accuracy
against epsilon, adversarial examples, accuracy per corruption and severity); a warm rerun
reads every result back and attacks nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from vcheck.evaluate.adversarial import GATES
from vcheck.report.schema import SCHEMA
from vcheck.robustness.corruptions import CORRUPTIONS

REPO = Path(__file__).resolve().parents[1]
SUITES = [REPO / "suites" / "test_adversarial.py", REPO / "suites" / "test_corruptions.py"]
pytestmark = [pytest.mark.slow, pytest.mark.trains]


@dataclass(frozen=True)
class Run:
    ret: int
    out: str
    doc: dict


def _run(cwd: Path, cache: Path) -> Run:
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    metrics = cwd / "reports" / "metrics.json"
    args = [
        "--model=fmnist_cnn",
        "--max-samples=40",
        f"--cache-dir={cache}",
        f"--metrics-json={metrics}",
        f"--report={cwd / 'reports' / 'report.html'}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, SUITES), "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert metrics.is_file(), out
    return Run(proc.returncode, out, json.loads(metrics.read_text()))


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    cwd = tmp_path_factory.mktemp("robustness")
    return cwd / "cache", _run(cwd, cwd / "cache")


def _checks(doc: dict, suite: str) -> dict[str, dict]:
    return {c["metric"]: c for c in doc["checks"] if c["suite"] == suite}


def _artifacts(doc: dict, suite: str) -> dict[str, dict]:
    return {a["name"]: a for a in doc["artifacts"] if a["suite"] == suite}


def test_both_suites_pass_and_record_every_check_and_figure(cold):
    _, run = cold
    assert run.ret == 0, run.out
    jsonschema.validate(run.doc, SCHEMA)
    adv = _checks(run.doc, "adversarial")
    for norm, eps in (("linf", (0.01, 0.03, 0.1)), ("l2", (0.25, 0.5, 1.0))):
        robust = [adv[f"robust_accuracy[{norm},eps={e:g}]"] for e in eps]
        for c in robust:
            assert c["n"] == 40 and c["ci_method"] == "wilson" and c["gate"] == "point"
            assert c["ci"][0] <= c["value"] <= c["ci"][1]
            assert c["outcome"] in ("pass", "info")
        values = [c["value"] for c in robust]
        assert values == sorted(values, reverse=True)  # stronger threat, lower accuracy
        assert values[0] > 0.5 and values[-1] <= 0.1  # the default model is not robust
        clean = robust[0]["details"]["clean_accuracy"]
        assert values[0] <= clean and clean > 0.8
        for gate in GATES:  # every obfuscated-gradient gate passes for a plain CNN
            sanity = adv[f"sanity[{norm},{gate}]"]
            assert sanity["outcome"] == "pass", sanity
    assert adv["robust_accuracy[linf,eps=0.01]"]["threshold"] == 0.6  # the shipped floor
    assert 0 < adv["median_min_l2"]["value"] < 2
    arts = _artifacts(run.doc, "adversarial")
    curve = arts["robust_accuracy_vs_eps[linf]"]["data"]["series"][0]
    assert curve["x"] == [0.0, 0.01, 0.03, 0.1]
    assert curve["y"][1:] == [
        adv[f"robust_accuracy[linf,eps={e}]"]["value"] for e in curve["x"][1:]
    ]
    examples = arts["adversarial_examples[linf]"]["data"]["items"]
    assert 1 <= len(examples) <= 10
    for item in examples:
        assert item["png"] and item["adversarial_prediction"] != item["true"]
        assert item["clean_prediction"] == item["true"] and item["epsilon"] in (0.01, 0.03, 0.1)

    cor = _checks(run.doc, "corruptions")
    for name in CORRUPTIONS:
        c = cor[f"accuracy[{name}]"]
        assert c["n"] == 40 and len(c["details"]["per_severity"]) == 5
    mean = cor["mean_accuracy"]
    assert mean["outcome"] == "pass" and mean["threshold"] == 0.72
    assert cor["worst_corruption_accuracy"]["value"] <= mean["value"]
    assert cor["relative_drop"]["direction"] == "max"
    table = _artifacts(run.doc, "corruptions")["accuracy_by_corruption_and_severity"]["data"]
    assert [row[0] for row in table["rows"]] == list(CORRUPTIONS)
    assert "vcheck: adversarial linf on fmnist_test: attacking " in run.out


def test_a_warm_rerun_attacks_nothing_and_reports_the_same(cold, tmp_path: Path):
    cache, first = cold
    warm = _run(tmp_path, cache)
    assert warm.ret == 0, warm.out
    for norm in ("linf", "l2"):
        assert f"vcheck: adversarial {norm} on fmnist_test: from cache" in warm.out
        assert f"vcheck: adversarial {norm} on fmnist_test: attacking" not in warm.out
    assert "vcheck: corruptions on fmnist_test: from cache" in warm.out
    for suite in ("adversarial", "corruptions"):
        assert _checks(warm.doc, suite) == _checks(first.doc, suite)
        assert _artifacts(warm.doc, suite) == _artifacts(first.doc, suite)
