"""End-to-end tests of the vcheck pytest plugin: the repo's real ``suites/`` as a user runs them.

Runs that load a model go through a subprocess (``python -m pytest``), as CI would run them, so
torch's process state never leaks between runs. Runs that must stop with a usage error before
anything is loaded run in-process, which saves the few seconds a fresh interpreter spends
importing torch; the modules they touch are imported below so pytester never re-imports them.

One module-scoped baseline run (default model, fresh prediction cache) is shared: other tests
read its metrics JSON and reuse its cache, so they only pay for loading the model. Runs that
get past collection name ``suites/test_accuracy.py``, so exact counts (tests, forward passes)
hold and the file stays fast when more suites are added; usage errors use ``suites/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import torch
import torchvision
from PIL import Image

# Loaded before any in-process run, so pytester's sys.modules cleanup never unloads them.
import vcheck.data.sources
import vcheck.models
import vcheck.profiles  # noqa: F401
from vcheck.evaluate.sanity import PROBE_SIZE
from vcheck.report.schema import SCHEMA

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
ACCURACY = SUITES / "test_accuracy.py"
N = 300  # --max-samples of every run on the default model
ACCURACY_METRICS = {
    "top1",
    "top5",
    "balanced_accuracy",
    "worst_class_recall",
    "auc_ovr_macro",
    "ece",
    "nll",
}
SANITY_METRICS = {
    "non_finite_fraction",
    "probability_like_rows",
    "batch1_vs_batch_max_rel_diff",
    "repeat_max_rel_diff",
}
REPORT = Path("reports") / "fmnist_cnn.html"
METRICS = Path("reports") / "fmnist_cnn.metrics.json"
COUNTER = "vcheck_forward_counter"
COUNTER_SOURCE = '''
"""Counts the images that go through the model's forward pass, via vcheck's own hook."""
from pathlib import Path

images = 0


def _count(module, args):
    global images
    images += args[0].shape[0]


def pytest_vcheck_model_loaded(model):
    model.module.register_forward_pre_hook(_count)


def pytest_sessionfinish(session):
    Path("forward_images.txt").write_text(str(images))
'''


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing outside tmp_path: no bytecode next to the suites, no shared vcheck cache."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("VCHECK_CACHE_DIR", raising=False)


@dataclass(frozen=True)
class Baseline:
    """The shared first run: its arguments, output, working folder and metrics document."""

    args: tuple[str, ...]
    result: pytest.RunResult
    cwd: Path
    cache_dir: Path
    metrics_bytes: bytes
    doc: dict

    def check(self, metric: str) -> dict:
        (found,) = (
            c
            for c in self.doc["checks"]
            if (c["suite"], c["metric"], c["slice"]) == ("accuracy", metric, None)
        )
        return found


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """The accuracy suite on the default model with a fresh cache, counting forward passes.

    pytester is function-scoped, so this one run calls ``python -m pytest`` itself, with the
    same isolation pytester gives (own cwd and HOME, no PYTEST_ADDOPTS, no colours).
    """
    cwd = tmp_path_factory.mktemp("baseline")
    cache_dir = cwd / "cache"
    (cwd / f"{COUNTER}.py").write_text(COUNTER_SOURCE)
    args = (
        str(ACCURACY),
        f"--max-samples={N}",
        f"--cache-dir={cache_dir}",
        "--junitxml=junit.xml",
        "-p",
        "no:cacheprovider",
        "-p",
        COUNTER,
        "-rA",
    )
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    result = pytest.RunResult(
        proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines(), 0
    )
    metrics = cwd / METRICS
    assert metrics.is_file(), f"no metrics JSON written:\n{proc.stdout}\n{proc.stderr}"
    data = metrics.read_bytes()
    return Baseline(args, result, cwd, cache_dir, data, json.loads(data))


def run_suites(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    """Run the real suites in a fresh interpreter, with pytester's cwd as the project."""
    return pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=600)


def run_to_usage_error(pytester: pytest.Pytester, *args: str | Path) -> pytest.RunResult:
    """Run in-process a command line that must stop before any model or data is loaded."""
    return pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.errlines if line.strip()]


def assert_usage_error(result: pytest.RunResult, pytester: pytest.Pytester, *needles: str) -> str:
    """Exit 4 before any test, with one error line that contains every needle."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    lines = error_lines(result)
    assert len(lines) == 1, lines
    (line,) = lines
    assert line.startswith("ERROR: vcheck: ")
    for needle in needles:
        assert needle in line
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not re.search(r"\d+ (passed|failed|skipped|errors?)\b", result.stdout.str())
    assert not (pytester.path / "reports").exists()  # nothing ran, so nothing was reported
    return line


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


# -- 1. the default run -------------------------------------------------------------------------


def test_default_model_passes_and_writes_reports(baseline: Baseline) -> None:
    result = baseline.result
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    outcomes = result.parseoutcomes()
    assert set(outcomes) == {"passed"}
    assert outcomes["passed"] == len(baseline.doc["checks"]) >= 12  # one check per test
    result.stdout.fnmatch_lines(
        ["*= vcheck PASS =*", "*checks passed, 0 failed*model fmnist_cnn*", f"report:*{REPORT}"]
    )

    html = (baseline.cwd / REPORT).read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "vcheck PASS: fmnist_cnn" in html and "top1" in html

    doc = baseline.doc
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "PASS"
    assert doc["model"]["name"] == "fmnist_cnn"
    assert [(e["name"], e["n"]) for e in doc["eval_sets"]] == [("fmnist_test", N)]
    per_set = [c for c in doc["checks"] if c["eval_set"] == "fmnist_test" and not c["slice"]]
    assert {c["metric"] for c in per_set} >= ACCURACY_METRICS | SANITY_METRICS
    assert {c["outcome"] for c in doc["checks"]} == {"pass"}  # the profile gates every one
    assert doc["summary"]["checks"] == {"pass": len(doc["checks"]), "fail": 0, "info": 0}
    for metric in ("top1", "top5", "worst_class_recall"):  # Wilson intervals
        check = baseline.check(metric)
        low, high = check["ci"]
        assert low <= check["value"] <= high
        assert check["ci_method"]
    assert baseline.check("top1")["n"] == N


def test_every_check_is_a_junit_property(baseline: Baseline) -> None:
    tree = ET.parse(baseline.cwd / "junit.xml")
    recorded = [
        json.loads(prop.get("value"))
        for case in tree.iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "vcheck.check"
    ]

    def key(check: dict) -> tuple:
        return check["metric"], check["eval_set"], check["slice"] or ""

    assert sorted(recorded, key=key) == sorted(baseline.doc["checks"], key=key)
    top1 = [
        prop.get("value")
        for prop in tree.iter("property")
        if prop.get("name") == "vcheck.accuracy.top1.fmnist_test"
    ]
    assert [float(v) for v in top1] == [baseline.check("top1")["value"]]


# -- 2. prediction cache and determinism ----------------------------------------------------------


def test_second_run_reuses_cached_predictions(pytester: pytest.Pytester, baseline: Baseline):
    first_count = int((baseline.cwd / "forward_images.txt").read_text())
    assert first_count == N + 3 * PROBE_SIZE  # one full pass, then the sanity probe
    assert "predictions from cache" not in baseline.result.stdout.str()

    pytester.makepyfile(**{COUNTER: COUNTER_SOURCE})
    result = run_suites(pytester, *baseline.args)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["vcheck: fmnist_cnn on fmnist_test: predictions from cache"])
    # The sanity probe is cached with the predictions: a warm run runs the model on nothing.
    assert int((pytester.path / "forward_images.txt").read_text()) == 0
    # Same seed and settings: the metrics JSON is identical, byte for byte.
    assert (pytester.path / METRICS).read_bytes() == baseline.metrics_bytes


# -- 3. thresholds and gates ----------------------------------------------------------------------


def test_profile_above_the_model_fails_the_run(
    pytester: pytest.Pytester, baseline: Baseline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # a wide CI log: pytest keeps the reason on the line
    profile = pytester.makefile(".toml", too_strict="[accuracy]\ntop1 = { min = 0.999 }\n")
    result = run_suites(
        pytester,
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={baseline.cache_dir}",
        f"--profile={profile}",
        "--report=out/gate.html",
        "--metrics-json=out/gate.json",
        "-k",
        "test_metric",
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes()["failed"] == 1
    top1 = baseline.check("top1")["value"]
    message = f"top1 on fmnist_test = {top1:.4f} [[]*] (n={N}) fails the threshold >= 0.999*"
    result.stdout.fnmatch_lines(
        [
            "*= vcheck FAIL =*",
            f"FAILED CHECK {message}",
            f"FAILED *test_accuracy.py::test_metric[[]top1-fmnist_test[]] - *{message}",
        ]
    )
    result.stdout.fnmatch_lines([message])  # the failing test's own report
    doc = read_json(pytester.path / "out" / "gate.json")
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "FAIL"
    failed = [c for c in doc["checks"] if c["outcome"] == "fail"]
    assert [(c["metric"], c["threshold"], c["direction"]) for c in failed] == [
        ("top1", 0.999, "min")
    ]
    assert failed[0]["value"] == top1
    assert "FAIL" in (pytester.path / "out" / "gate.html").read_text()


def test_gate_lower_requires_the_interval_to_clear_the_threshold(
    pytester: pytest.Pytester, baseline: Baseline
) -> None:
    top1 = baseline.check("top1")
    low = top1["ci"][0]
    threshold = round((low + top1["value"]) / 2, 6)
    assert low < threshold < top1["value"]
    profile = pytester.makefile(".toml", between=f"[accuracy]\ntop1 = {{ min = {threshold} }}\n")
    common = (
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={baseline.cache_dir}",
        f"--profile={profile}",
        "-k",
        "test_metric and top1",
    )

    point = run_suites(pytester, *common, "--gate=point")
    assert point.ret == pytest.ExitCode.OK, point.stdout.str()
    assert point.parseoutcomes()["passed"] == 1

    lower = run_suites(pytester, *common, "--gate=lower")
    assert lower.ret == pytest.ExitCode.TESTS_FAILED
    lower.stdout.fnmatch_lines(
        [f"FAILED CHECK top1 on fmnist_test = * fails the threshold >= {threshold:g} (gate=lower)"]
    )
    (check,) = read_json(pytester.path / METRICS)["checks"]
    assert (check["gate"], check["outcome"]) == ("lower", "fail")
    assert check["margin"] == pytest.approx(low - threshold)


# -- 4, 5. model names and weights ----------------------------------------------------------------


def test_unknown_model_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run_to_usage_error(pytester, SUITES, "--model=no_such_model")
    line = assert_usage_error(result, pytester, "Unknown model 'no_such_model'")
    assert "Did you mean one of 'fmnist_cnn'" in line and "list_models" in line


def test_misspelt_model_suggests_the_close_names(pytester: pytest.Pytester) -> None:
    result = run_to_usage_error(pytester, SUITES, "--model=convnext_tt")
    line = assert_usage_error(result, pytester, "Unknown model 'convnext_tt'", "Did you mean")
    assert "'convnext_t'" in line or "'convnext_tiny'" in line


@pytest.mark.slow
def test_torchvision_model_needs_weights_then_runs_on_an_image_folder(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    missing = run_to_usage_error(pytester, SUITES, "--model=convnext_t")
    assert_usage_error(missing, pytester, "convnext_tiny-983f1562.pth", "--weights")

    torch.manual_seed(0)
    weights = tmp_path / "convnext_tiny_random.pth"
    torch.save(torchvision.models.convnext_tiny(weights=None).state_dict(), weights)
    gen = torch.Generator().manual_seed(0)
    for label in ("0", "1", "2"):
        (tmp_path / "val" / label).mkdir(parents=True)
        for i in range(2):
            pixels = torch.randint(0, 256, (32, 40, 3), dtype=torch.uint8, generator=gen)
            Image.fromarray(pixels.numpy()).save(tmp_path / "val" / label / f"{i}.png")
    try:
        result = run_suites(
            pytester,
            ACCURACY,
            "--model=convnext_t",
            f"--weights={weights}",
            f"--data-root={tmp_path / 'val'}",
            f"--cache-dir={tmp_path / 'cache'}",
            "--metrics-json=convnext.json",
        )
    finally:
        weights.unlink()  # 110 MB

    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), result.stderr.str()
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) > 0
    doc = read_json(pytester.path / "convnext.json")
    jsonschema.validate(doc, SCHEMA)
    assert doc["model"]["name"] == "convnext_t"
    assert doc["model"]["num_classes"] == 1000
    assert [(e["name"], e["n"]) for e in doc["eval_sets"]] == [("imagenet_val", 6)]


def test_corrupt_checkpoint_is_one_clear_line(pytester: pytest.Pytester, baseline: Baseline):
    garbage = pytester.path / "garbage.pt"
    garbage.write_bytes(bytes(range(256)) * 8)
    result = run_suites(
        pytester,
        SUITES,
        "--model=fmnist_cnn",
        f"--weights={garbage}",
        f"--cache-dir={baseline.cache_dir}",
    )
    line = assert_usage_error(result, pytester, "cannot read weights file", str(garbage))
    assert "weights_only` set to `False`" not in line  # torch's advice to unpickle code


# -- 6. configuration ---------------------------------------------------------------------------


def test_unknown_config_key_is_a_usage_error(pytester: pytest.Pytester) -> None:
    config = pytester.makefile(".toml", vcheck="max_sample = 100\n")
    result = run_to_usage_error(pytester, SUITES, f"--vcheck-config={config}")
    assert_usage_error(result, pytester, "config key 'max_sample'", "Did you mean 'max_samples'")


def test_missing_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run_to_usage_error(pytester, SUITES, "--profile=no/such/profile.toml")
    assert_usage_error(result, pytester, str(pytester.path / "no/such/profile.toml"))


def test_pyproject_tool_vcheck_settings_are_honoured(
    pytester: pytest.Pytester, baseline: Baseline
) -> None:
    pytester.makepyprojecttoml("[tool.vcheck]\nmax_samples = 120\nseed = 3\n")
    result = run_suites(
        pytester,
        ACCURACY,
        f"--rootdir={pytester.path}",  # the project is pytester's folder, not this repo
        f"--cache-dir={baseline.cache_dir}",
        "-k",
        "test_metric and top1",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    doc = read_json(pytester.path / METRICS)
    assert (doc["settings"]["max_samples"], doc["settings"]["seed"]) == (120, 3)
    assert [(e["name"], e["n"]) for e in doc["eval_sets"]] == [("fmnist_test", 120)]
    assert [c["n"] for c in doc["checks"]] == [120]


# -- 7. strict ------------------------------------------------------------------------------------


def test_strict_turns_a_skipped_slice_into_a_failure(
    pytester: pytest.Pytester, baseline: Baseline
) -> None:
    profile = pytester.makefile(
        ".toml", ghost='[accuracy.slices.ghost]\nids = ["nope"]\ntop1 = { min = 0.9 }\n'
    )
    common = (
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={baseline.cache_dir}",
        f"--profile={profile}",
        "-k",
        "test_slice or test_logits_are_finite",
        "-rs",
    )
    reason = "slice 'ghost' has no samples in fmnist_test"

    lenient = run_suites(pytester, *common)
    assert lenient.ret == pytest.ExitCode.OK
    assert lenient.parseoutcomes() == {"passed": 1, "skipped": 1, "deselected": 10}
    lenient.stdout.fnmatch_lines(["*= vcheck PASS =*", f"SKIPPED *{reason}"])

    strict = run_suites(pytester, *common, "--strict")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert strict.parseoutcomes()["failed"] == 1
    strict.stdout.fnmatch_lines([f"*skipped under --strict: {reason}*"])
    (problem,) = read_json(pytester.path / METRICS)["problems"]
    assert problem["outcome"] == "failed" and reason in problem["message"]


def test_a_run_where_every_gate_was_skipped_does_not_pass(
    pytester: pytest.Pytester, baseline: Baseline
) -> None:
    profile = pytester.makefile(".toml", ghost='[accuracy.slices.ghost]\nids = ["nope"]\n')
    result = run_suites(
        pytester,
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={baseline.cache_dir}",
        f"--profile={profile}",
        "-k",
        "test_slice",
    )
    assert result.parseoutcomes()["skipped"] == 1
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # nothing was verified
    result.stdout.fnmatch_lines(["*= vcheck FAIL =*"])
    assert read_json(pytester.path / METRICS)["verdict"] == "FAIL"


# -- 9. discoverability ---------------------------------------------------------------------------


def test_help_lists_the_vcheck_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "vcheck: release gates for image classifiers:",
            "*--model=NAME*",
            "*--weights=PATH*",
            "*--max-samples=N*",
            "*--gate={point,lower,upper}*",
            "*--cache-dir=DIR*",
        ]
    )


PROBE = """
import os, sys


def pytest_collection_finish(session):
    sys.stderr.write(f"omp={os.environ.get('OMP_WAIT_POLICY')}\\n")
"""


@pytest.mark.parametrize(("own", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_suites_let_openmp_threads_sleep_unless_the_user_chose(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, own, seen
):
    """The suites' conftest sets OMP_WAIT_POLICY before torch loads (it reads it once);
    a user's own setting is kept."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    if own:
        monkeypatch.setenv("OMP_WAIT_POLICY", own)
    pytester.makepyfile(omp_probe=PROBE)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    result = pytester.runpytest_subprocess(
        REPO / "suites" / "test_accuracy.py", "--collect-only", "-q", "-p", "omp_probe"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert f"omp={seen}" in result.stderr.str()
