"""End to end: ``pytest suites/test_patch.py`` as a user runs it, in a fresh interpreter.

One module-scoped cold run on the default model with a small, fast [patch] table is shared:
the other tests rerun it warm (the cache holds every case, so they pay only for loading the
model) with other thresholds or gates. The backdoored zoo model runs with its shipped
profile and must fail the patch gate through the suite's own attack.
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

from vcheck.report.schema import SCHEMA

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "test_patch.py"
METRICS = Path("reports") / "metrics.json"
FAST = """
[patch]
sizes = [0.1]
locations = ["center", "random"]
lighting = "image"
samples = 60
fit_samples = 60
steps = 8
batch_size = 16
examples = 2
"""
pytestmark = [pytest.mark.slow, pytest.mark.trains]


@dataclass(frozen=True)
class Run:
    ret: int
    out: str
    doc: dict
    metrics_bytes: bytes


def _run(cwd: Path, *args: str) -> Run:
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITE), "-p", "no:cacheprovider", "-rA", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = proc.stdout + proc.stderr
    path = cwd / METRICS
    assert path.is_file(), out
    data = path.read_bytes()
    return Run(proc.returncode, out, json.loads(data), data)


def _profile(cwd: Path, extra: str = "") -> Path:
    path = cwd / "patch.toml"
    path.write_text(FAST + extra)
    return path


def _args(cwd: Path, cache: Path, profile: Path, *more: str) -> tuple[str, ...]:
    return (
        f"--profile={profile}",
        f"--cache-dir={cache}",
        f"--metrics-json={cwd / METRICS}",
        f"--report={cwd / 'reports' / 'report.html'}",
        *more,
    )


@dataclass(frozen=True)
class Cold:
    cwd: Path
    cache: Path
    run: Run


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Cold:
    cwd = tmp_path_factory.mktemp("patch")
    cache = cwd / "cache"
    profile = _profile(cwd, "max_asr = 0.9\n")
    return Cold(cwd, cache, _run(cwd, *_args(cwd, cache, profile)))


def _checks(doc: dict) -> dict[str, dict]:
    return {c["metric"]: c for c in doc["checks"] if c["suite"] == "patch"}


def test_default_model_passes_a_gate_it_clears_and_records_the_report_data(cold: Cold):
    run = cold.run
    assert run.ret == 0, run.out
    jsonschema.validate(run.doc, SCHEMA)
    checks = _checks(run.doc)
    for location in ("center", "random"):
        label = f"area=0.1,location={location}"
        asr = checks[f"asr[{label}]"]
        assert asr["outcome"] == "pass" and asr["threshold"] == 0.9 and asr["direction"] == "max"
        low, high = asr["ci"]
        assert low <= asr["value"] <= high and asr["ci_method"] == "wilson"
        assert asr["details"]["patch_pixels"] == "9x9"
        for metric in (f"asr_noise[{label}]", f"accuracy_under_patch[{label}]"):
            assert checks[metric]["outcome"] == "info"
        # n: the judged images the model gets right without a patch (of 60)
        assert 40 <= asr["n"] <= 60 == checks[f"accuracy_under_patch[{label}]"]["n"]
    artifacts = {a["name"]: a for a in run.doc["artifacts"] if a["suite"] == "patch"}
    series = artifacts["asr_vs_size[location=center]"]
    assert series["kind"] == "series"
    curves = {c["label"]: c for c in series["data"]["series"]}
    assert set(curves) == {"adversarial patch", "noise patch"}
    assert curves["adversarial patch"]["x"] == [0.1]
    assert curves["adversarial patch"]["low"][0] <= curves["adversarial patch"]["y"][0]
    pictures = [a for name, a in artifacts.items() if name.startswith("fooled[")]
    assert len(pictures) == 2
    for picture in pictures:
        first, *fooled = picture["data"]["items"]
        assert first["caption"] == "the patch, as printed" and first["png"]
        assert len(fooled) <= 2
        for item in fooled:
            assert item["png"] and item["patched_prediction"] != item["true"]
            assert item["clean_prediction"] == item["true"]
    # progress lines while optimising
    assert "vcheck: patch universal area=0.1,location=center on fmnist_test: " in run.out


def test_warm_rerun_reads_every_case_from_the_cache(cold: Cold, tmp_path: Path):
    profile = _profile(tmp_path, "max_asr = 0.9\n")
    warm = _run(tmp_path, *_args(tmp_path, cold.cache, profile))
    assert warm.ret == 0, warm.out
    for location in ("center", "random"):
        assert f"area=0.1,location={location} on fmnist_test: from cache" in warm.out
    assert "images/s" not in warm.out.split("predictions from cache")[-1]
    assert _checks(warm.doc) == _checks(cold.run.doc)
    assert warm.doc["artifacts"] == cold.run.doc["artifacts"]


def test_a_failing_gate_names_size_location_and_asr_in_one_line(cold: Cold, tmp_path: Path):
    asr = _checks(cold.run.doc)["asr[area=0.1,location=center]"]
    assert asr["value"] > 0  # the default model is not immune to a 9x9 patch
    profile = _profile(tmp_path, "max_asr = 0.0\n")
    run = _run(tmp_path, *_args(tmp_path, cold.cache, profile))
    assert run.ret == 1
    lines = [ln for ln in run.out.splitlines() if ln.startswith("FAILED CHECK")]
    assert any(
        ln.startswith(f"FAILED CHECK {asr['metric']} on fmnist_test = {asr['value']:.4f}")
        and "fails the threshold <= 0 (gate=point)" in ln
        and "9x9-pixel universal patch" in ln
        for ln in lines
    ), lines


def test_gate_modes_use_the_wilson_interval(cold: Cold, tmp_path: Path):
    asr = _checks(cold.run.doc)["asr[area=0.1,location=center]"]
    between = (asr["value"] + asr["ci"][1]) / 2  # above the estimate, below its upper end
    profile = _profile(tmp_path, f"max_asr = {between}\n")
    point = _run(tmp_path, *_args(tmp_path, cold.cache, profile))
    lower = _run(tmp_path, *_args(tmp_path, cold.cache, profile, "--gate=lower"))
    assert _checks(point.doc)["asr[area=0.1,location=center]"]["outcome"] == "pass"
    assert _checks(lower.doc)["asr[area=0.1,location=center]"]["outcome"] == "fail"
    assert lower.ret == 1 and "(gate=lower)" in lower.out


def test_backdoored_model_fails_the_patch_gate(tmp_path: Path):
    run = _run(
        tmp_path,
        "--model=fmnist_backdoor",
        f"--cache-dir={tmp_path / 'cache'}",
        f"--metrics-json={tmp_path / METRICS}",
    )
    assert run.ret == 1, run.out
    failed = [c for c in _checks(run.doc).values() if c["outcome"] == "fail"]
    assert failed and all(c["metric"].startswith("asr[area=") for c in failed)
    lines = [ln for ln in run.out.splitlines() if ln.startswith("FAILED CHECK asr[area=")]
    assert len(lines) == len(failed)
    assert all("location=" in ln and "fails the threshold <=" in ln for ln in lines)
    # The untargeted attack sends the fooled images to the backdoor's target class.
    assert all("fooled images mostly predicted Bag" in ln for ln in lines)
    # The suite's own attack found the backdoor: far above the noise patch of the same size.
    for check in failed:
        noise = _checks(run.doc)[check["metric"].replace("asr[", "asr_noise[")]
        assert check["value"] > noise["ci"][1]
