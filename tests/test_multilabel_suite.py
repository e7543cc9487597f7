"""End-to-end runs of ``suites/test_multilabel.py`` as a user runs it (``python -m pytest`` in a
subprocess): the default model on the multi-object set, a profile it cannot meet, a warm run
that reads the prediction cache, and the multi-label (sigmoid) zoo model on its own profile.

One module-scoped cold run of the default model is shared; the other runs reuse its cache.
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

# Loaded before any in-process run, so pytester's sys.modules cleanup never unloads them.
import vcheck.data.sources
import vcheck.evaluate.multilabel
import vcheck.models  # noqa: F401
from vcheck.report.schema import SCHEMA

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SUITES = REPO / "suites"
MULTILABEL = SUITES / "test_multilabel.py"
ACCURACY = SUITES / "test_accuracy.py"
LABELS = REPO / "fixtures" / "multilabel"
COUNTER = "vcheck_forward_counter"
COUNTER_SOURCE = """
from pathlib import Path

images = 0


def _count(module, args):
    global images
    images += args[0].shape[0]


def pytest_vcheck_model_loaded(model):
    model.module.register_forward_pre_hook(_count)


def pytest_sessionfinish(session):
    Path("forward_images.txt").write_text(str(images))
"""


@dataclass(frozen=True)
class Run:
    ret: int
    out: str
    cwd: Path
    doc: dict
    metrics: bytes

    def check(self, metric: str, where: str) -> dict:
        (found,) = (
            c
            for c in self.doc["checks"]
            if c["suite"] == "multilabel" and (c["metric"], c["slice"]) == (metric, where)
        )
        return found

    def forward_images(self) -> int:
        return int((self.cwd / "forward_images.txt").read_text())


def run(cwd: Path, *args: str | Path) -> Run:
    """``python -m pytest`` in ``cwd`` with pytester's isolation, counting forward passes."""
    (cwd / f"{COUNTER}.py").write_text(COUNTER_SOURCE)
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env["COLUMNS"] = "300"  # a wide CI log: one line per failure
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, args), "-p", "no:cacheprovider", "-p", COUNTER],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    out = proc.stdout + proc.stderr
    metrics = next((cwd / "reports").glob("*.metrics.json"), None)
    assert metrics is not None, out
    data = metrics.read_bytes()
    return Run(proc.returncode, out, cwd, json.loads(data), data)


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cwd = tmp_path_factory.mktemp("cold")
    return run(cwd, MULTILABEL, f"--cache-dir={cwd / 'cache'}", "-rA")


def test_default_model_passes_with_real_accuracy_above_original(cold: Run) -> None:
    assert cold.ret == 0, cold.out
    assert "vcheck PASS" in cold.out
    doc = cold.doc
    jsonschema.validate(doc, SCHEMA)
    checks = [c for c in doc["checks"] if c["suite"] == "multilabel"]
    assert {c["eval_set"] for c in checks} == {"fmnist_multi"}
    assert {c["outcome"] for c in checks} == {"pass", "info"}
    for check in checks:  # every metric has n and an interval
        assert check["n"] > 0 and check["ci"] is not None, check["metric"]
        assert check["ci"][0] <= check["value"] <= check["ci"][1], check["metric"]
    real, original = cold.check("top1", "real"), cold.check("original_top1", "real")
    assert real["n"] == original["n"] > 1500  # the same images: empty sets left out of both
    assert real["value"] > original["value"]
    assert real["details"]["excluded"] > 0  # and counted
    forgiven = cold.check("forgiven_fraction", "real")["details"]
    errors = round((1 - original["value"]) * original["n"])
    assert forgiven["original_errors"] == errors
    assert forgiven["forgiven"] == round((real["value"] - original["value"]) * real["n"]) > 0
    (summary,) = (a for a in doc["artifacts"] if a["name"] == "summary/real")
    assert ["forgiven (original-label errors the set accepts)", forgiven["forgiven"]] == (
        summary["data"]["rows"][2][:2]
    )
    shankar_a = cold.check("top1_class_avg", "shankar")
    shankar_b = cold.check("top1_correct", "shankar")
    assert shankar_a["ci_method"].startswith("bootstrap") and shankar_b["ci_method"] == "wilson"
    assert shankar_a["value"] != shankar_b["value"]
    for metric in ("vartopk_set_match", "vartopk_recovered"):
        assert cold.check(metric, "real")["value"] < real["value"]
    hard = cold.check("top1", "shankar/hard")
    assert hard["threshold"] is not None and hard["n"] > 100
    (table,) = (a for a in doc["artifacts"] if a["name"] == "errors_by_category/hard")
    assert table["kind"] == "table"
    assert table["data"]["columns"] == ["category", "severity", "errors", "share"]
    assert {r[0] for r in table["data"]["rows"]} & {"Fine-grained error", "Non-prototypical"}
    attributed = [c for c in checks if c["metric"].startswith("errors_")]
    assert attributed and {c["outcome"] for c in attributed} == {"info"}
    # one pass over the 2,000 composites, nothing else
    assert cold.forward_images() == 2000


def test_warm_run_reads_the_prediction_cache(cold: Run, tmp_path: Path) -> None:
    warm = run(tmp_path, MULTILABEL, f"--cache-dir={cold.cwd / 'cache'}")
    assert warm.ret == 0, warm.out
    assert "fmnist_cnn on fmnist_multi: predictions from cache" in warm.out
    assert warm.forward_images() == 0
    assert warm.metrics == cold.metrics  # same seed and settings: identical bytes


def profile_with(tmp_path: Path, extra_real: str) -> Path:
    text = (REPO / "fixtures" / "profiles" / "fmnist_cnn.toml").read_text()
    text = text.replace('"../multilabel/', f'"{LABELS}/')
    text = text.replace("top1 = { min = 0.83 }\n", extra_real, 1)
    path = tmp_path / "too_strict.toml"
    path.write_text(text)
    return path


def test_profile_above_the_model_fails_with_one_line(cold: Run, tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "top1 = { min = 0.99 }\n")
    result = run(
        tmp_path,
        MULTILABEL,
        f"--cache-dir={cold.cwd / 'cache'}",
        f"--profile={profile}",
        "-k",
        "test_label_set and real",
    )
    assert result.ret == 1, result.out
    real = cold.check("top1", "real")
    low, high = real["ci"]
    line = (
        f"top1 on fmnist_multi/real = {real['value']:.4f} [{low:.4f}, {high:.4f}] "
        f"(n={real['n']}) fails the threshold >= 0.99 (gate=point): label set real "
        "(fmnist_multi.real.json), top-1 in the label set"
    )
    assert f"FAILED CHECK {line}" in result.out
    failed = [ln for ln in result.out.splitlines() if "test_multilabel.py::" in ln]
    failed = [ln for ln in failed if ln.startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].endswith(line), failed
    assert result.doc["verdict"] == "FAIL"


def test_unknown_eval_set_stops_before_any_test(cold: Run, tmp_path: Path) -> None:
    profile = profile_with(tmp_path, "top1 = { min = 0.83 }\n")
    profile.write_text(profile.read_text().replace('"fmnist_multi"', '"fmnist_multy"', 1))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(MULTILABEL), f"--profile={profile}",
         f"--cache-dir={cold.cwd / 'cache'}", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert "eval_set='fmnist_multy' in [multilabel.label_sets.real]" in proc.stdout
    assert "this run's eval sets are fmnist_test, fmnist_multi" in proc.stdout
    assert " passed" not in proc.stdout


def test_multilabel_zoo_model_passes_its_own_profile(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        ACCURACY,
        MULTILABEL,
        "--model=fmnist_multilabel",
        f"--cache-dir={tmp_path / 'cache'}",
        "--strict",
        "-rA",
    )
    assert result.ret == 0, result.out
    doc = result.doc
    assert doc["model"]["output_kind"] == "sigmoid" and doc["verdict"] == "PASS"
    # Sigmoid scores are checked too: rows all in [0, 1] would be probabilities, not logits.
    probability_like = [c for c in doc["checks"] if c["metric"] == "probability_like_rows"]
    assert probability_like and all(c["outcome"] == "pass" for c in probability_like)
    for metric in ("auc_macro", "map", "f1_micro", "f1_macro", "subset_accuracy"):
        check = result.check(metric, "real")
        assert check["outcome"] == "pass" and check["threshold"] is not None, metric
    per_class = result.check("auc_macro", "real")["details"]["per_class_auc"]
    assert len(per_class) == 10
    worst = result.check("worst_class_auc", "real")
    assert worst["details"]["worst_class"] == min(per_class, key=per_class.get)
    assert result.check("hamming_loss", "real")["direction"] == "max"
    accuracy = [c for c in doc["checks"] if c["suite"] == "accuracy"]
    assert {c["outcome"] for c in accuracy} <= {"pass", "info"} and accuracy
