"""The report's end-to-end behaviour, through real runs of the accuracy suite: runs split over
pytest-xdist workers write the serial run's metrics JSON and predict once; ``--baseline``
adds non-regression checks or refuses other data; output paths are checked before any test;
a crash after the tests still writes both outputs with the verdict ERROR.

Runs that load the model go through ``python -m pytest`` in a subprocess (as CI runs them);
runs that must stop before loading anything run in-process, like tests/test_plugin.py's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

# Loaded before any in-process run, so pytester's sys.modules cleanup never unloads them.
import vcheck.data.sources
import vcheck.models
import vcheck.profiles
import vcheck.report.baseline
import vcheck.report.outputs  # noqa: F401
from vcheck.evaluate.sanity import PROBE_SIZE
from vcheck.report.document import pack_bits, unpack_bits
from vcheck.report.schema import SCHEMA

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
ACCURACY = REPO / "suites" / "test_accuracy.py"
N = 300
METRICS = Path("reports") / "fmnist_cnn.metrics.json"
REPORT = Path("reports") / "fmnist_cnn.html"
COUNTER = "vcheck_pass_counter"
COUNTER_SOURCE = '''
"""Counts prediction passes (calls of vcheck.predictions.forward_logits) and images through
the model, per process (xdist worker or not)."""
import json
import os
from pathlib import Path

import vcheck.predictions

passes = []
images = 0
_forward_logits = vcheck.predictions.forward_logits


def _counted(model, eval_set, *args, **kwargs):
    passes.append(eval_set.name)
    return _forward_logits(model, eval_set, *args, **kwargs)


vcheck.predictions.forward_logits = _counted


def _count(module, args):
    global images
    images += args[0].shape[0]


def pytest_vcheck_model_loaded(model):
    model.module.register_forward_pre_hook(_count)


def pytest_sessionfinish(session):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    Path(f"count-{worker}.json").write_text(json.dumps({"passes": passes, "images": images}))
'''


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("VCHECK_CACHE_DIR", raising=False)


def run(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    """``python -m pytest`` in ``cwd`` (its own HOME, no PYTEST_ADDOPTS, importable cwd)."""
    env = {**os.environ, "HOME": str(cwd), "PY_COLORS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd), env.get("PYTHONPATH")]))
    for name in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR", "PYTEST_XDIST_WORKER"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", *map(str, args), "-p", "no:cacheprovider"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def counts(cwd: Path) -> dict[str, dict]:
    """Per process ("main" or the xdist worker id): prediction passes and model images."""
    return {p.stem[6:]: json.loads(p.read_text()) for p in cwd.glob("count-*.json")}


@dataclass(frozen=True)
class Serial:
    cwd: Path
    cache: Path  # warm: the serial run's predictions
    metrics: bytes
    doc: dict
    args: tuple[str, ...]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Serial:
    """The accuracy suite, serial, fresh cache; its cache is then kept warm for other runs."""
    cwd = tmp_path_factory.mktemp("serial")
    (cwd / f"{COUNTER}.py").write_text(COUNTER_SOURCE)
    args = (ACCURACY, f"--max-samples={N}", f"--cache-dir={cwd / 'cache'}", "-p", COUNTER)
    proc = run(cwd, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (cwd / "cache").rename(cwd / "warm")
    data = (cwd / METRICS).read_bytes()
    return Serial(cwd, cwd / "warm", data, json.loads(data), tuple(map(str, args)))


# -- parallel runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_write_the_serial_metrics_and_predict_once(serial: Serial) -> None:
    (serial.cwd / METRICS).unlink()
    for old in serial.cwd.glob("count-*.json"):
        old.unlink()
    proc = run(serial.cwd, *serial.args, "-n", "2")  # same paths, fresh cache
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "= vcheck PASS =" in proc.stdout
    assert (serial.cwd / METRICS).read_bytes() == serial.metrics
    assert 'id="verdict">PASS<' in (serial.cwd / REPORT).read_text()
    per_process = counts(serial.cwd)
    assert sorted(per_process) == ["gw0", "gw1", "main"]
    assert per_process.pop("main")["images"] == 0  # the controller runs no model
    workers = list(per_process.values())
    assert sum(len(c["passes"]) for c in workers) == 1  # one prediction pass in all
    probes = sum(c["images"] for c in workers) - N  # one probe (3 x 64), cached like predictions
    assert probes == 3 * PROBE_SIZE


# -- baseline -------------------------------------------------------------------------------------


def test_a_regression_against_the_baseline_fails_with_mcnemar(serial: Serial, tmp_path: Path):
    better = json.loads(serial.metrics)
    (top1,) = (c for c in better["checks"] if c["metric"] == "top1" and not c["slice"])
    top1["value"] += 0.05
    top1["ci"] = [v + 0.05 for v in top1["ci"]]
    entry = better["per_sample"]["fmnist_test"]
    entry["top1_correct"] = pack_bits(unpack_bits(entry["top1_correct"], N) | True)
    (tmp_path / "base.json").write_text(json.dumps(better))
    (tmp_path / "p.toml").write_text("[baseline]\ntolerance = 0.02\n")
    proc = run(
        tmp_path,
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={serial.cache}",
        "--baseline=base.json",
        "--profile=p.toml",
        "-k",
        "test_metric and (top1 or ece)",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout  # the tests pass; the comparison fails the run
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILED CHECK")]
    assert len(lines) == 2, proc.stdout
    assert re.match(r"FAILED CHECK accuracy\.top1 on fmnist_test = -0\.0500 .*>= -0\.02", lines[0])
    assert lines[1].startswith("FAILED CHECK accuracy.top1.mcnemar_p on fmnist_test = 0.0000")
    doc = json.loads((tmp_path / METRICS).read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "FAIL" and doc["baseline"]["compared"] == 3  # top1, ece, McNemar
    wrong = sum(~unpack_bits(doc["per_sample"]["fmnist_test"]["top1_correct"], N))
    (mcnemar,) = (c for c in doc["checks"] if c["metric"] == "accuracy.top1.mcnemar_p")
    assert mcnemar["details"]["regressions"] == wrong and mcnemar["details"]["improvements"] == 0
    ece = next(c for c in doc["checks"] if c["metric"] == "accuracy.ece")
    assert ece["outcome"] == "pass" and ece["value"] == 0
    html = (tmp_path / REPORT).read_text()
    top = html[: html.index('id="provenance"')]
    assert "accuracy.top1</b> on fmnist_test" in top and "accuracy.top1.mcnemar_p" in top


def test_a_baseline_of_other_data_stops_before_any_test(serial: Serial, tmp_path: Path):
    (tmp_path / "base.json").write_bytes(serial.metrics)
    proc = run(
        tmp_path,
        ACCURACY,
        "--max-samples=200",  # another subset: other eval-set fingerprint
        f"--cache-dir={serial.cache}",
        "--baseline=base.json",
    )
    assert proc.returncode == 4, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("ERROR: vcheck: --baseline=")
    assert "eval set fmnist_test has fingerprint" in errors[0]
    assert "passed" not in proc.stdout and not (tmp_path / "reports").exists()


# -- outputs ------------------------------------------------------------------------------------


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    result = pytester.runpytest_inprocess(ACCURACY, *args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    lines = [ln for ln in result.errlines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: vcheck: "), lines
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    return lines[0]


def test_output_paths_are_checked_before_any_test(pytester: pytest.Pytester) -> None:
    (pytester.path / "out").mkdir()
    (pytester.path / "blocker").write_text("x")
    assert "--metrics-json=" in usage_error(pytester, "--metrics-json=out")
    assert "is a directory" in usage_error(pytester, "--report=out/")
    assert "same file" in usage_error(pytester, "--report=a.out", "--metrics-json=a.out")
    assert "is a file" in usage_error(pytester, "--report=blocker/r.html")
    if Path("/proc/self").is_dir():
        assert "cannot write in /proc" in usage_error(pytester, "--report=/proc/vc/r.html")
    assert "no such file" in usage_error(pytester, "--baseline=missing.json")
    assert not (pytester.path / "reports").exists()


CRASH = '''
"""Makes one recorded check's threshold infinite on its way to the report (the crash of
issue 8 item 5: JSON cannot hold it), after the tests themselves passed."""
import json

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    for i, (name, value) in enumerate(report.user_properties):
        if name == "vcheck.check":
            check = json.loads(value)
            check["threshold"], check["direction"] = 1e999, "max"
            report.user_properties[i] = (name, json.dumps(check))
'''


def test_a_crash_after_the_tests_writes_an_error_report(serial: Serial, tmp_path: Path):
    (tmp_path / "vcheck_crash.py").write_text(CRASH)
    (tmp_path / "reports").mkdir()
    shutil.copy(serial.cwd / REPORT, tmp_path / REPORT)  # the previous run's PASS report
    shutil.copy(serial.cwd / METRICS, tmp_path / METRICS)
    proc = run(
        tmp_path,
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={serial.cache}",
        "-p",
        "vcheck_crash",
        "-k",
        "test_metric and top1",
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "= vcheck ERROR =" in proc.stdout
    reason = "ValueError: Out of range float values are not JSON compliant"
    assert f"vcheck ERROR while building the metrics document: {reason}" in proc.stdout
    doc = json.loads((tmp_path / METRICS).read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "ERROR" and doc["error"]["reason"].startswith(reason)
    assert doc["model"]["fingerprint"] == serial.doc["model"]["fingerprint"]
    assert [c["metric"] for c in doc["checks"]] == ["top1"]  # what was measured is kept
    html = (tmp_path / REPORT).read_text()
    assert 'id="verdict">ERROR<' in html and 'id="verdict">PASS<' not in html


INTERRUPT = """
import pytest


def pytest_runtest_call(item):
    if "ece" in item.nodeid:
        raise KeyboardInterrupt  # as a user's Ctrl-C halfway through the run
"""


def test_an_interrupted_run_is_an_error_not_a_pass(serial: Serial, tmp_path: Path):
    (tmp_path / "vcheck_interrupt.py").write_text(INTERRUPT)
    proc = run(
        tmp_path,
        ACCURACY,
        f"--max-samples={N}",
        f"--cache-dir={serial.cache}",
        "-p",
        "vcheck_interrupt",
        "-k",
        "test_metric and (top1 or ece)",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr  # pytest's "interrupted"
    doc = json.loads((tmp_path / METRICS).read_text())
    jsonschema.validate(doc, SCHEMA)
    assert doc["verdict"] == "ERROR" and "stopped early" in doc["error"]["reason"]
    assert 'id="verdict">ERROR<' in (tmp_path / REPORT).read_text()
