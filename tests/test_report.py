"""vcheck.report: the metrics.json document (schema, determinism, verdict) and the HTML page."""

import copy
import json
import math
import re

import hypothesis.strategies as st
import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from vcheck.checks import CheckResult, Threshold
from vcheck.config import VcheckConfig
from vcheck.report.document import (
    build_document,
    dumps,
    ids_digest,
    pack_bits,
    unpack_bits,
    verdict,
    write_atomic,
)
from vcheck.report.html import render
from vcheck.report.schema import SCHEMA

FINGERPRINT = "ab12" * 16
PASSED = {"passed": 3}


def make_checks():
    return [
        CheckResult("accuracy", "top1", "fmnist_test", 0.91, 10000, Threshold(0.9, "min"),
                    (0.905, 0.915), "wilson"),
        CheckResult("accuracy", "ece", "fmnist_test", 0.08, 10000, Threshold(0.05, "max"),
                    (0.07, 0.09), "bootstrap-percentile(200)"),
        CheckResult("accuracy", "nll", "fmnist_test", 0.3, 10000),
        CheckResult("accuracy", "top1", "fmnist_test", math.nan, 0, Threshold(0.95, "min"),
                    (math.nan, math.nan), "wilson", slice="footwear"),
        CheckResult("sanity", "non_finite_logits", "fmnist_test", 0.0, 10000,
                    Threshold(0.0, "max"), details={"non_finite_rows": 0}),
        CheckResult("accuracy", "worst_class_recall", "fmnist_test", 0.7, 1000,
                    Threshold(0.65, "min"), (0.67, 0.73), "wilson",
                    details={"worst_class": "Shirt <b>"}),
    ]  # fmt: skip


def make_document(checks=None, tests=PASSED, problems=()):
    correct = np.array([True, False, True] * 5)
    return build_document(
        model={
            "name": "fmnist_cnn",
            "fingerprint": FINGERPRINT,
            "source": "/repo/fixtures/models/fmnist_cnn.pt",
            "domain": "fashion_mnist",
            "num_classes": 10,
        },
        eval_sets=[{"name": "fmnist_test", "n": 15, "fingerprint": "ef" * 32, "source": "x"}],
        settings=VcheckConfig(max_samples=15).as_dict(),
        profile={"path": "/repo/fixtures/profiles/fmnist_cnn.toml", "sha256": "cd" * 32},
        checks=make_checks() if checks is None else checks,
        tests=dict(tests),
        problems=list(problems),
        per_sample={
            "fmnist_test": {
                "n": 15,
                "ids_sha256": ids_digest([f"test-{i:05d}" for i in range(15)]),
                "top1_correct": pack_bits(correct),
            }
        },
    )


def test_document_validates_against_the_schema():
    document = json.loads(dumps(make_document()))
    jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert document["schema"] == "vcheck.metrics" and document["schema_version"] == 1
    assert document["summary"]["checks"] == {"pass": 3, "fail": 2, "info": 1}
    nan_check = next(c for c in document["checks"] if c["slice"] == "footwear")
    assert nan_check["value"] is None and nan_check["ci"] is None
    assert nan_check["outcome"] == "fail"


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda d: d.update(verdict="MAYBE"),
        lambda d: d["checks"][0].pop("outcome"),
        lambda d: d["checks"][0].update(gate="sometimes"),
        lambda d: d["model"].update(fingerprint="not-hex"),
        lambda d: d["checks"][0].update(ci=[0.1]),
        lambda d: d.pop("per_sample"),
    ],
)
def test_schema_rejects_malformed_documents(corrupt):
    document = json.loads(dumps(make_document()))
    corrupt(document)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_dumps_is_byte_identical_for_identical_inputs():
    first = dumps(make_document())
    second = dumps(make_document())
    assert first == second
    shuffled = make_checks()[::-1]  # check order does not matter either
    assert dumps(make_document(checks=shuffled)) == first
    assert "NaN" not in first and "Infinity" not in first


def test_checks_are_sorted_by_suite_eval_set_slice_metric():
    order = [(c["suite"], c["slice"] or "", c["metric"]) for c in make_document()["checks"]]
    assert order == sorted(order)


def test_write_atomic_leaves_only_the_file(tmp_path):
    path = tmp_path / "out" / "m.json"
    write_atomic(path, dumps(make_document()))
    write_atomic(path, dumps(make_document()))  # overwrites
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]
    assert json.loads(path.read_text())["verdict"] == "FAIL"


@pytest.mark.parametrize(
    ("tests", "outcomes", "expected"),
    [
        ({}, ["pass"], "FAIL"),  # nothing ran
        ({"skipped": 5}, ["pass"], "FAIL"),
        ({"passed": 2}, ["pass", "pass"], "PASS"),
        ({"passed": 2}, ["pass", "info"], "PASS"),
        ({"passed": 2}, [], "PASS"),
        ({"passed": 2}, ["pass", "fail"], "FAIL"),
        ({"passed": 2, "failed": 1}, ["pass"], "FAIL"),
        ({"passed": 2, "error": 1}, ["pass"], "FAIL"),
        ({"passed": 2, "skipped": 1}, ["pass"], "PASS"),
    ],
)
def test_verdict_rules(tests, outcomes, expected):
    thresholds = {"pass": (1.0, Threshold(0.5, "min")), "fail": (0.0, Threshold(0.5, "min")),
                  "info": (0.3, None)}  # fmt: skip
    checks = []
    for outcome in outcomes:
        value, threshold = thresholds[outcome]
        checks.append(CheckResult("s", "m", "e", value, 10, threshold))
        assert checks[-1].outcome == outcome
    assert verdict(checks, tests) == expected
    assert make_document(checks=checks, tests=tests)["verdict"] == expected


@settings(max_examples=50, deadline=None)
@given(arrays(np.bool_, st.integers(0, 300)))
def test_pack_bits_round_trip(correct):
    packed = pack_bits(correct)
    assert isinstance(packed, str) and packed.isascii()
    np.testing.assert_array_equal(unpack_bits(packed, len(correct)), correct)


def test_pack_bits_is_compact():
    packed = pack_bits(np.ones(10_000, dtype=bool))
    assert len(packed) <= 1700  # 1,250 bytes before base64


def test_ids_digest_depends_on_order():
    assert ids_digest(["a", "b"]) != ids_digest(["b", "a"])
    assert re.fullmatch("[0-9a-f]{64}", ids_digest(["a"]))


# -- HTML ------------------------------------------------------------------------------


@pytest.fixture
def page():
    problems = [{"nodeid": "suites/test_accuracy.py::test_x", "outcome": "failed",
                 "message": "boom <here>"}]  # fmt: skip
    return render(make_document(tests={"passed": 3, "failed": 1}, problems=problems), 12.34)


def test_html_shows_verdict_fingerprint_and_every_metric(page):
    assert 'id="verdict">FAIL<' in page
    assert "<title>vcheck FAIL: fmnist_cnn</title>" in page
    assert FINGERPRINT in page
    for check in make_checks():
        assert f"<td>{check.metric}" in page
    assert "footwear" in page and "12.3 s" in page


def test_html_pass_page():
    checks = [CheckResult("accuracy", "top1", "fmnist_test", 0.95, 100, Threshold(0.9, "min"))]
    html = render(make_document(checks=checks))
    assert 'id="verdict">PASS<' in html and 'class="verdict PASS"' in html


def test_html_lists_failed_rows_before_passed_rows(page):
    tables = re.findall(r"<table>(.*?)</table>", page, flags=re.S)
    assert len(tables) >= 2
    for table in tables:
        outcomes = re.findall(r'<tr class="(fail|pass|info)">', table)
        order = {"fail": 0, "pass": 1, "info": 2}
        assert outcomes == sorted(outcomes, key=order.get)
    first = re.findall(r'<tr class="(fail|pass|info)">', tables[0])
    assert first[:2] == ["fail", "fail"] and "pass" in first


def test_html_escapes_user_text(page):
    assert "Shirt &lt;b&gt;" in page and "Shirt <b>" not in page
    assert "boom &lt;here&gt;" in page


def test_html_fetches_nothing(page):
    lowered = page.lower()
    for needle in ("src=", "href=", "<script", "<link", "@import", "url("):
        assert needle not in lowered
    assert "http" not in lowered


def test_html_is_identical_for_identical_documents():
    assert render(make_document()) == render(copy.deepcopy(make_document()))


def test_reports_are_written_with_ordinary_file_permissions(tmp_path):
    import os
    import stat

    from vcheck.report.document import write_atomic

    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.html", "<html></html>")
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "r.html").stat().st_mode)
    assert mode == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temp file left behind
