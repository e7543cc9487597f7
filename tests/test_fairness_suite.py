"""End-to-end: ``suites/test_fairness.py`` as a user runs it, in fresh interpreters.

The default model passes its fairness profile on the full Fashion-MNIST test set; the biased
zoo model fails it with one line naming the attribute, the groups, the gap with its interval
and the threshold; a warm run reads the prediction and slice caches; a metadata table adds its
columns as attributes; every metadata mistake stops the run with exit 4 and one line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import vcheck.data.sources
import vcheck.models
import vcheck.profiles  # noqa: F401  (loaded before in-process runs, as in test_plugin.py)

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
FAIRNESS = SUITES / "test_fairness.py"
SLICES = ("lighting", "object_size", "object_brightness")


@dataclass(frozen=True)
class Run:
    returncode: int
    out: str
    err: str
    doc: dict | None


def run(cwd: Path, *args: str | Path, metrics: str = "out.json") -> Run:
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env["COLUMNS"] = "300"  # keep each failure on one line
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, args), "-p", "no:cacheprovider",
         f"--metrics-json={metrics}", "--report=out.html"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    path = cwd / metrics
    data = path.read_bytes() if path.is_file() else None
    return Run(proc.returncode, proc.stdout, proc.stderr, json.loads(data) if data else None)


def checks(doc: dict, **where) -> list[dict]:
    return [c for c in doc["checks"] if all(c[k] == v for k, v in where.items())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fairness")


@pytest.fixture(scope="module")
def default_run(workdir: Path) -> Run:
    return run(workdir, FAIRNESS, f"--cache-dir={workdir / 'cache'}")


@pytest.mark.slow
def test_default_model_passes_its_fairness_profile(default_run: Run, workdir: Path):
    assert default_run.returncode == 0, default_run.out + default_run.err
    assert "vcheck PASS" in default_run.out
    doc = default_run.doc
    assert doc["verdict"] == "PASS"
    gated = [c for c in doc["checks"] if c["threshold"] is not None]
    assert {c["slice"] for c in gated} == set(SLICES)
    assert {c["metric"] for c in gated} >= {"accuracy_gap", "worst_group_accuracy", "deo"}
    assert all(c["outcome"] == "pass" for c in gated)
    for attribute in SLICES:
        (gap,) = checks(doc, metric="accuracy_gap", slice=attribute)
        low, high = gap["ci"]
        assert low <= gap["value"] <= high and gap["n"] == 10_000
        assert gap["ci_method"].startswith("stratified-bootstrap")
        groups = checks(doc, metric="group_accuracy")
        mine = [c for c in groups if c["slice"].startswith(f"{attribute}=")]
        assert len(mine) == 3 and sum(c["n"] for c in mine) == 10_000
        (bars,) = [a for a in doc["artifacts"] if a["name"] == f"group_accuracy[{attribute}]"]
        assert bars["kind"] == "bars" and len(bars["data"]["labels"]) == 3
        data = bars["data"]
        assert all(
            lo <= v <= hi
            for lo, v, hi in zip(data["low"], data["values"], data["high"], strict=True)
        )
        assert "no group below min_group_size=100" in bars["data"]["note"]
    (pair,) = checks(doc, metric="pair_gap[light_minus_dark]")
    assert pair["outcome"] == "pass" and "light" in pair["details"]["note"]
    assert len(list((workdir / "cache" / "slices").iterdir())) == 1  # measured once, cached


@pytest.mark.slow
def test_warm_run_reads_the_caches_and_writes_the_same_metrics(default_run: Run, workdir: Path):
    warm = run(workdir, FAIRNESS, f"--cache-dir={workdir / 'cache'}", "-s", metrics="warm.json")
    assert warm.returncode == 0, warm.out
    assert "fmnist_cnn on fmnist_test: predictions from cache" in warm.out
    assert "image slices of fmnist_test from cache" in warm.out
    assert "images measured" not in warm.out
    for doc in (warm.doc, default_run.doc):
        doc["settings"].pop("metrics_json")  # the only difference: where it was written
    assert warm.doc == default_run.doc


@pytest.mark.slow
def test_biased_model_fails_on_the_slice_it_was_trained_without(default_run, workdir: Path):
    result = run(
        workdir, FAIRNESS, "--model=fmnist_biased", f"--cache-dir={workdir / 'cache'}",
        metrics="biased.json",
    )  # fmt: skip
    assert result.returncode == 1, result.out + result.err
    line = next(x for x in result.out.splitlines() if x.startswith("FAILED CHECK accuracy_gap"))
    pattern = (
        r"FAILED CHECK accuracy_gap on fmnist_test/object_brightness = (0\.\d+) "
        r"\[(0\.\d+), (0\.\d+)\] \(n=10000\) fails the threshold <= 0\.05 \(gate=point\): "
        r"dark (0\.\d+) \(n=\d+\) vs (medium|light) (0\.\d+) \(n=\d+\), over 3 groups$"
    )
    match = re.match(pattern, line)
    assert match, line
    gap, low, _, dark, _, best = match.groups()
    assert float(low) > 0.05 and float(gap) == pytest.approx(float(best) - float(dark), abs=1e-4)
    failed = checks(result.doc, outcome="fail")
    assert {c["slice"] for c in failed} == {"object_brightness"}  # only the biased slice
    assert {c["metric"] for c in failed} >= {"accuracy_gap", "pair_gap[light_minus_dark]"}


# -- metadata tables ------------------------------------------------------------------------------


def region_of(i: int) -> str:
    return ("Europe", "Africa", "Asia")[i % 3]


@pytest.mark.slow
def test_metadata_columns_become_attributes_and_small_groups_are_listed(tmp_path: Path):
    rows = ["id,region,age"]
    for i in range(10_000):
        region = "Antarctica" if i in (3, 13, 23) else region_of(i)
        rows.append(f"test-{i:05d},{region},{(i * 7) % 90}")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "vcheck.toml").write_text(
        '[metadata.fmnist_test]\npath = "meta.csv"\nbins = { age = [30, 60] }\n'
    )
    (tmp_path / "profile.toml").write_text(
        "[fairness]\nmin_group_size = 20\n"
        "[fairness.attributes.regoin]\naccuracy_gap = { max = 0.1 }\n"
        '[fairness.pairs.europe_minus_africa]\nattribute = "region"\n'
        'groups = ["Europe", "Africa"]\n'
    )
    result = run(
        tmp_path, FAIRNESS, "--vcheck-config=vcheck.toml", "--profile=profile.toml",
        "--max-samples=300", f"--cache-dir={tmp_path / 'cache'}",
    )  # fmt: skip
    # The only failure: the profile names an attribute no eval set has.
    assert result.returncode == 1, result.out + result.err
    assert "1 failed" in result.out
    assert re.search(
        r"\[fairness\.attributes\.regoin\] of .* names no attribute of any eval set "
        r"\(did you mean 'region'\?",
        result.out,
    )
    doc = result.doc
    region = {c["slice"]: c for c in checks(doc, metric="group_accuracy")}
    assert {"region=Europe", "region=Africa", "region=Asia"} <= set(region)
    assert sum(region[f"region={r}"]["n"] for r in ("Europe", "Africa", "Asia")) <= 300
    assert {"age=<30", "age=30-60", "age=>=60"} <= set(region)
    (gap,) = checks(doc, metric="accuracy_gap", slice="region")
    (bars,) = [a for a in doc["artifacts"] if a["name"] == "group_accuracy[region]"]
    if "region=Antarctica" in region:  # the stratified subset may or may not hold them
        n = region["region=Antarctica"]["n"]
        assert f"excluded (n < 20): Antarctica (n={n})" in gap["details"]["note"]
        assert "Antarctica" in bars["data"]["note"] and "Antarctica" not in bars["data"]["labels"]
    else:
        assert "Antarctica (n=0)" in bars["data"]["note"]  # listed, never silently dropped
    (pair,) = checks(doc, metric="pair_gap[europe_minus_africa]")
    europe, africa = region["region=Europe"]["value"], region["region=Africa"]["value"]
    assert pair["value"] == pytest.approx(europe - africa)
    assert pair["slice"] == "region" and pair["outcome"] == "info"


@pytest.mark.slow
def test_samples_without_a_metadata_row_stop_the_run(tmp_path: Path):
    rows = "\n".join(f"test-{i:05d},{region_of(i)}" for i in range(0, 10_000, 2))
    (tmp_path / "meta.csv").write_text(f"id,region\n{rows}\n")
    (tmp_path / "vcheck.toml").write_text('metadata = { fmnist_test = "meta.csv" }\n')
    result = run(
        tmp_path, SUITES, "--vcheck-config=vcheck.toml", "--max-samples=50",
        f"--cache-dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert result.returncode == 4, result.out + result.err
    (line,) = [x for x in result.err.splitlines() if x.strip()]
    assert line.startswith("ERROR: vcheck: metadata table ")
    assert str(tmp_path / "meta.csv") in line
    assert "has no row for" in line and "of the 50 samples of fmnist_test (e.g. 'test-" in line
    assert result.doc is None


@pytest.mark.parametrize(
    ("csv", "setting", "needle"),
    [
        ("id,brightness\ntest-00000,0.5\ntest-00001,0.7\n", "", "column 'brightness' is numeric"),
        ("id,region\ntest-00000,X\ntest-00000,Y\n", "", "duplicate id 'test-00000'"),
        ("id,region\ntest-00000,X\ntest-00001,\n", "", "column 'region' is empty for id"),
        ("id,age\ntest-00000,3\n", ", bins = { age = [50] }", "bin '>=50' of column 'age'"),
    ],
)
def test_metadata_mistakes_are_one_line_usage_errors(pytester, csv, setting, needle):
    pytester.path.joinpath("meta.csv").write_text(csv)
    pytester.path.joinpath("vcheck.toml").write_text(
        f'[metadata]\nfmnist_test = {{ path = "meta.csv"{setting} }}\n'
    )
    result = pytester.runpytest_inprocess(SUITES, "--vcheck-config=vcheck.toml", "-p",
                                          "no:cacheprovider")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    (line,) = [x for x in result.errlines if x.strip()]
    assert line.startswith("ERROR: vcheck: metadata table ")
    assert str(pytester.path / "meta.csv") in line and needle in line
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_metadata_for_an_unknown_eval_set_is_a_usage_error(pytester):
    pytester.path.joinpath("vcheck.toml").write_text('metadata = { fmnist_tst = "meta.csv" }\n')
    result = pytester.runpytest_inprocess(SUITES, "--vcheck-config=vcheck.toml", "-p",
                                          "no:cacheprovider")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [x for x in result.errlines if x.strip()]
    assert "Unknown eval set 'fmnist_tst'. Did you mean 'fmnist_test'?" in line


def test_missing_metadata_file_is_a_usage_error(pytester):
    pytester.path.joinpath("vcheck.toml").write_text('metadata = { fmnist_test = "nope.csv" }\n')
    result = pytester.runpytest_inprocess(SUITES, "--vcheck-config=vcheck.toml", "-p",
                                          "no:cacheprovider")  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [x for x in result.errlines if x.strip()]
    assert f"metadata table {pytester.path / 'nope.csv'} does not exist" in line
