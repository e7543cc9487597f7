"""Around the report: output paths checked up front, baseline comparisons (tolerances from
the profile, MOVER intervals, exact McNemar), and merging runs split over machines."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from vcheck.checks import CheckResult, Threshold
from vcheck.errors import InvalidArgument, UnknownNameError
from vcheck.profiles import ProfileContext, load_profile
from vcheck.report import baseline as bl
from vcheck.report import demo
from vcheck.report.document import dumps, pack_bits
from vcheck.report.merge import main as merge_main
from vcheck.report.merge import merge
from vcheck.report.outputs import check_output_paths, json_safe

CTX = ProfileContext(Path("p.toml"), demo.CLASSES)

# -- output paths -------------------------------------------------------------------------------


def test_good_output_paths_pass_and_create_nothing(tmp_path):
    check_output_paths(tmp_path / "new" / "r.html", tmp_path / "new" / "m.json")
    assert list(tmp_path.iterdir()) == []  # the folder is created at the end, not now


@pytest.mark.parametrize(
    ("report", "metrics", "needle"),
    [
        ("out", "m.json", "--report="),  # an existing directory
        ("r.html", "out", "--metrics-json="),
        ("same.out", "same.out", "are the same file"),
        ("blocker/r.html", "m.json", "is a file, so the folder cannot be created"),
    ],
)
def test_bad_output_paths_are_refused_up_front(tmp_path, report, metrics, needle):
    (tmp_path / "out").mkdir()
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(InvalidArgument, match=needle) as info:
        check_output_paths(tmp_path / report, tmp_path / metrics)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_unwritable_report_folder_is_refused_even_for_root(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot write in /proc"):
        check_output_paths(Path("/proc/vcheck-report/r.html"), tmp_path / "m.json")


def test_json_safe_keeps_what_json_can_hold():
    data = {"a": math.inf, "b": [np.float32(0.5), np.int64(3), (1, math.nan)], 2: object}
    safe = json_safe(data)
    assert safe["a"] is None and safe["b"][:2] == [0.5, 3] and safe["b"][2] == [1, None]
    json.dumps(safe, allow_nan=False)


# -- baseline: profile table --------------------------------------------------------------------


def test_baseline_profile_defaults_and_per_metric_tolerances():
    assert bl.parse_profile({}, CTX) == bl.BaselineProfile()
    prof = bl.parse_profile(
        {"tolerance": 0.02, "mcnemar_alpha": 0.01,
         "metrics": {"accuracy.top1": 0.005, "soundness.verified_rate": 0}},
        CTX,
    )  # fmt: skip
    assert prof.tolerance_for("accuracy", "top1") == 0.005
    assert prof.tolerance_for("accuracy", "ece") == 0.02
    assert prof.tolerance_for("soundness", "verified_rate[CROWN]") == 0.0  # base name applies


@pytest.mark.parametrize(
    ("table", "error", "needle"),
    [
        ({"tolerence": 0.1}, UnknownNameError, "Did you mean 'tolerance'"),
        ({"tolerance": -0.1}, InvalidArgument, "tolerance=-0.1"),
        ({"tolerance": math.inf}, InvalidArgument, "tolerance=inf"),
        ({"mcnemar_alpha": 0}, InvalidArgument, "mcnemar_alpha=0"),
        ({"mcnemar_alpha": 0.9}, InvalidArgument, "mcnemar_alpha=0.9"),
        ({"metrics": {"top1": 0.01}}, InvalidArgument, '"suite.metric"'),
        ({"metrics": {"acuracy.top1": 0.01}}, UnknownNameError, "Did you mean 'accuracy'"),
        ({"metrics": {"accuracy.top1": "a"}}, InvalidArgument, "accuracy.top1='a'"),
    ],
)
def test_baseline_profile_mistakes_are_one_line(table, error, needle):
    with pytest.raises(error, match=None) as info:
        bl.parse_profile(table, CTX)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_baseline_table_is_a_profile_table(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[baseline]\ntolerance = 0.03\n[baseline.metrics]\n"accuracy.top1" = 0.001\n')
    prof = load_profile(path, demo.CLASSES).table("baseline")
    assert prof.tolerance == 0.03 and prof.tolerance_for("accuracy", "top1") == 0.001


# -- baseline: loading and comparing ------------------------------------------------------------


def write(tmp_path: Path, doc: dict, name: str = "base.json") -> Path:
    path = tmp_path / name
    path.write_text(dumps(doc))
    return path


def test_load_baseline_refuses_what_is_not_a_metrics_document(tmp_path):
    for text, needle in [
        ("{", "not a readable JSON file"),
        ('{"schema": "other"}', "not a vcheck metrics JSON"),
        ('{"schema": "vcheck.metrics", "schema_version": 9}', "schema_version=9"),
    ]:
        (tmp_path / "b.json").write_text(text)
        with pytest.raises(InvalidArgument, match=needle):
            bl.load_baseline(tmp_path / "b.json")
    with pytest.raises(InvalidArgument, match="no such file"):
        bl.load_baseline(tmp_path / "missing.json")
    with pytest.raises(InvalidArgument, match="is a directory"):
        bl.load_baseline(tmp_path)
    assert bl.load_baseline(write(tmp_path, demo.document()))["schema_version"] == 2


def test_a_baseline_on_other_data_is_refused(tmp_path):
    doc = demo.document()
    bl.check_eval_sets(doc, Path("b.json"), {demo.EVAL_SET: "ef" * 32})  # same data: fine
    with pytest.raises(InvalidArgument, match="eval set fmnist_test has fingerprint efefefefefef"):
        bl.check_eval_sets(doc, Path("b.json"), {demo.EVAL_SET: "00" * 32})
    with pytest.raises(InvalidArgument, match="compare runs of the same domain"):
        bl.check_eval_sets(doc, Path("b.json"), {"imagenet_val": "00" * 32})


def current_checks(doc: dict, **changes: float) -> list[dict]:
    checks = copy.deepcopy(doc["checks"])
    for c in checks:
        if c["suite"] == "accuracy" and not c["slice"] and c["metric"] in changes:
            c["value"] += changes[c["metric"]]
    return checks


def by_metric(results: list[CheckResult]) -> dict[tuple[str, str], CheckResult]:
    return {(r.metric, r.slice or ""): r for r in results}


def test_regressions_beyond_the_tolerance_fail_in_the_metric_direction():
    base = demo.document(failing=0)
    checks = current_checks(base, top1=-0.02, ece=+0.005, nll=+1.0)
    results = by_metric(bl.compare(base, checks, {}, bl.BaselineProfile(), "point"))
    top1 = results[("accuracy.top1", "")]
    assert top1.outcome == "fail" and top1.value == pytest.approx(-0.02)
    assert top1.threshold == Threshold(-0.01, "min")
    low, high = top1.ci
    assert low < -0.02 < high and top1.ci_method == "mover"
    assert results[("accuracy.ece", "")].outcome == "pass"  # worse, within 0.01
    assert results[("accuracy.nll", "")].outcome == "info"  # no direction known
    assert results[("accuracy.top1", "footwear")].outcome == "pass"  # unchanged slice
    matrix = results[("soundness.unsat_on_counterexample[CROWN]", "")]
    assert matrix.outcome == "pass" and matrix.threshold == Threshold(0.01, "max")
    assert "accuracy.top1.mcnemar_p" not in {m for m, _ in results}  # no per-sample data


def test_per_metric_tolerance_and_improvements():
    base = demo.document(failing=0)
    checks = current_checks(base, top1=-0.02, ece=-0.01)
    prof = bl.BaselineProfile(metrics={"accuracy.top1": 0.03})
    results = by_metric(bl.compare(base, checks, {}, prof, "point"))
    assert results[("accuracy.top1", "")].outcome == "pass"
    assert results[("accuracy.ece", "")].outcome == "pass"  # better calibrated


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    rng = np.random.default_rng(0)
    base = rng.random(2000) < 0.9
    current = base.copy()
    flip = rng.choice(2000, 60, replace=False)
    current[flip[:45]] = False  # 45 (or fewer) newly wrong
    current[flip[45:]] = True
    worse = int((base & ~current).sum())
    better = int((~base & current).sum())
    p, w, b = bl.mcnemar_p(base, current)
    assert (w, b) == (worse, better)
    assert p == pytest.approx(binomtest(worse, worse + better, 0.5, alternative="greater").pvalue)
    assert bl.mcnemar_p(base, base) == (1.0, 0, 0)


def test_paired_top1_gets_a_mcnemar_check():
    doc = demo.document(failing=0)
    entry = doc["per_sample"][demo.EVAL_SET]
    n = entry["n"]
    base_bits = np.ones(n, bool)
    doc["per_sample"][demo.EVAL_SET] = dict(entry, top1_correct=pack_bits(base_bits))
    now = base_bits.copy()
    now[:40] = False  # 40 regressions, no improvement
    mine = {demo.EVAL_SET: dict(entry, top1_correct=pack_bits(now))}
    results = by_metric(bl.compare(doc, doc["checks"], mine, bl.BaselineProfile(), "point"))
    check = results[("accuracy.top1.mcnemar_p", "")]
    assert check.outcome == "fail" and check.value < 1e-9
    assert check.details["regressions"] == 40 and check.details["improvements"] == 0
    same = {demo.EVAL_SET: doc["per_sample"][demo.EVAL_SET]}
    results = by_metric(bl.compare(doc, doc["checks"], same, bl.BaselineProfile(), "point"))
    assert results[("accuracy.top1.mcnemar_p", "")].value == 1.0


# -- merging ------------------------------------------------------------------------------------


def split(doc: dict) -> tuple[dict, dict]:
    """Two documents as two machines would write them: soundness on one, the rest on the
    other (tests, checks and pictures split alike)."""
    parts = []
    for mine in (lambda s: s == "soundness", lambda s: s != "soundness"):
        part = copy.deepcopy(doc)
        part["checks"] = [c for c in doc["checks"] if mine(c["suite"])]
        ids = {c["nodeid"] for c in part["checks"]}
        part["test_outcomes"] = {k: v for k, v in doc["test_outcomes"].items() if k in ids}
        part["artifacts"] = [a for a in doc["artifacts"] if mine(a["suite"])]
        parts.append(part)
    return parts[0], parts[1]


def test_merging_a_split_run_gives_the_whole_run():
    whole = demo.document()
    a, b = split(whole)
    merged = merge([a, b], ["a.json", "b.json"])
    assert dumps(merged) == dumps(whole)
    assert dumps(merge([b, a, b], ["b", "a", "b2"])) == dumps(whole)  # order, repeats


def test_merge_refuses_other_models_and_conflicting_results():
    a, b = split(demo.document())
    other = copy.deepcopy(b)
    other["model"]["fingerprint"] = "00" * 32
    with pytest.raises(InvalidArgument, match="merge only runs of one model"):
        merge([a, other], ["a.json", "b.json"])
    conflict = copy.deepcopy(a)
    conflict["checks"][0]["value"] = 0.5
    with pytest.raises(InvalidArgument, match="different results"):
        merge([a, conflict], ["a.json", "c.json"])
    seeded = copy.deepcopy(b)
    seeded["settings"]["seed"] = 7
    with pytest.raises(InvalidArgument, match="setting seed"):
        merge([a, seeded], ["a.json", "s.json"])


def test_merge_keeps_an_error_verdict():
    a, b = split(demo.document(failing=0))
    b["error"] = {"stage": "building the metrics document", "reason": "ValueError: x"}
    merged = merge([a, b], ["a.json", "b.json"])
    assert merged["verdict"] == "ERROR" and "b.json" in merged["error"]["reason"]


def test_merge_command_writes_both_files_or_one_line(tmp_path, capsys):
    a, b = split(demo.document())
    pa, pb = write(tmp_path, a, "a.metrics.json"), write(tmp_path, b, "b.metrics.json")
    assert merge_main([str(pa), str(pb), "-o", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged.metrics.json").read_text())
    assert merged["verdict"] == "FAIL"
    assert 'id="verdict">FAIL<' in (tmp_path / "merged.html").read_text()
    b["model"]["fingerprint"] = "00" * 32
    write(tmp_path, b, "b.metrics.json")
    capsys.readouterr()
    assert merge_main([str(pa), str(pb), "-o", str(tmp_path / "m2")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "merge only runs of one model" in err[0]
    assert not (tmp_path / "m2.html").exists()


def test_merge_runs_as_a_module(tmp_path):
    a, b = split(demo.document())
    pa, pb = write(tmp_path, a, "a.json"), write(tmp_path, b, "b.json")
    proc = subprocess.run(
        [sys.executable, "-m", "vcheck.report.merge", str(pa), str(pb), "-o", "out/m"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote out/m.metrics.json and out/m.html" in proc.stdout
    assert (tmp_path / "out" / "m.html").is_file()
