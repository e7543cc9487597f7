"""vcheck.report: the metrics.json document (schema, determinism, verdict), the HTML page
(first screen, grouping, pictures, self-contained), output checks and baseline comparisons."""

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
from vcheck.report import demo
from vcheck.report.document import (
    build_document,
    dumps,
    ids_digest,
    pack_bits,
    unpack_bits,
    verdict,
    write_atomic,
)
from vcheck.report.html import _num, _signed, render
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


def outcome_map(tests):
    """Node ids with the given outcome counts, e.g. {"passed": 2} -> two passed tests."""
    return {f"t.py::{kind}{i}": kind for kind, k in tests.items() for i in range(k)}


def make_document(checks=None, tests=PASSED, problems=(), error=None):
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
        test_outcomes=outcome_map(tests),
        problems=list(problems),
        error=error,
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
    assert document["schema"] == "vcheck.metrics" and document["schema_version"] == 2
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
        lambda d: d.update(verdict="ERROR", error={"stage": "x"}),
        lambda d: d["test_outcomes"].update({"t.py::x": "maybe"}),
        lambda d: d["artifacts"].append(
            {
                "suite": "s",
                "name": "n",
                "kind": "series",
                "eval_set": "e",
                "nodeid": "",
                "data": {"x": 1},
            }
        ),
        lambda d: d["per_sample"]["fmnist_test"].update(ids_sha256="short"),
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
    error = {"stage": "building the metrics document", "reason": "ValueError: boom"}
    assert verdict(checks, tests, error) == "ERROR"  # an incomplete run never passes


def test_error_document_validates_and_says_why():
    error = {"stage": "building the metrics document", "reason": "ValueError: boom"}
    document = json.loads(dumps(make_document(error=error)))
    jsonschema.validate(document, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert document["verdict"] == "ERROR" and document["error"] == error
    page = render(document)
    assert 'id="verdict">ERROR<' in page and "ValueError: boom" in page


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


def first_screen(page: str) -> str:
    """What comes before the provenance block: verdict, failing checks, failed tests."""
    return page[: page.index('id="provenance"')]


def test_html_shows_verdict_fingerprint_and_every_metric(page):
    assert 'id="verdict">FAIL<' in page
    assert "<title>vcheck FAIL: fmnist_cnn</title>" in page
    assert FINGERPRINT in page
    for check in make_checks():
        assert f"<td>{check.metric}" in page
    assert "footwear" in page and "12.3 s" in page


def test_first_screen_names_the_failing_checks_and_failed_tests(page):
    top = first_screen(page)
    assert top.index('id="verdict"') < top.index('id="failing"')
    listed = re.findall(r'<li class="failing-check">.*?<b>(\w+)</b> on ([\w /]+)</a>', top)
    assert sorted(listed) == [("ece", "fmnist_test"), ("top1", "fmnist_test / footwear")]
    assert "suites/test_accuracy.py::test_x" in top  # the failed test outside a check
    assert "threshold ≥ 0.95" in top  # what it had to clear


def test_first_screen_caps_a_long_list_of_failures():
    from vcheck.report.html import MAX_LISTED_FAILURES

    checks = [CheckResult("adversarial", f"m{i:03d}", "e", 0.1, 10, Threshold(0.5, "min"))
              for i in range(MAX_LISTED_FAILURES + 7)]  # fmt: skip
    top = first_screen(render(make_document(checks=checks)))
    assert top.count('class="failing-check"') == MAX_LISTED_FAILURES
    assert "and 7 more failing checks" in top


def test_html_pass_page():
    checks = [CheckResult("accuracy", "top1", "fmnist_test", 0.95, 100, Threshold(0.9, "min"))]
    html = render(make_document(checks=checks))
    assert 'id="verdict">PASS<' in html and 'class="verdict PASS"' in html
    assert "Every gate passed" in first_screen(html)
    assert 'class="failing-check"' not in html


def test_html_lists_failed_rows_before_passed_rows(page):
    tables = re.findall(r'<table class="checks">(.*?)</table>', page, flags=re.S)
    assert len(tables) == 2  # accuracy and sanity
    order = {"fail": 0, "pass": 1, "info": 2}
    for table in tables:
        for group in re.split(r'<tr class="group">', table):
            outcomes = re.findall(r'<tr class="(fail|pass|info)"', group)
            assert outcomes == sorted(outcomes, key=order.get)
    groups = re.findall(r'<tr class="group"><th colspan="7">([^<]+)<', tables[0])
    assert groups == ["fmnist_test", "fmnist_test / footwear"]  # one failure each: by name
    first = re.findall(r'<tr class="(fail|pass|info)"', tables[0])
    assert first[0] == "fail" and "pass" in first


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (-0.0, "0"), (0.91234, "0.9123"), (-0.05, "−0.0500"), (3, "3"),
     (-1e-7, "−1.00e−07"), (None, "—"), (math.nan, "—")],
)  # fmt: skip
def test_numbers_never_print_as_negative_zero(value, text):
    assert _num(value) == text


def test_margins_have_a_sign_and_their_digits():
    assert _signed(-0.0) == "0" and _signed(0.0) == "0"
    assert _signed(-4e-6) == "−4.00e−06"  # a tiny miss is still visibly a miss
    assert _signed(0.0287) == "+0.0287"
    check = CheckResult("accuracy", "top1", "e", 0.9, 100, Threshold(0.9, "min"))
    page = render(make_document(checks=[check]))
    assert "-0.0000" not in page and "−0.0000" not in page


def test_soundness_checks_are_a_network_by_verifier_matrix():
    doc = demo.document()
    page = render(doc)
    section = page[page.index('id="suite-soundness"') :]
    matrices = re.findall(r'<table class="matrix">(.*?)</table>', section, flags=re.S)
    bases = re.findall(r"<h3>(\w+)[ (<]", section)
    assert sorted(bases) == ["invalid_sat", "unsat_on_counterexample",
                             "unsat_on_falsified_clean", "verified_rate"]  # fmt: skip
    for table in matrices:
        header = re.findall(r"<th>([\w-]+)</th>", table.split("</tr>")[0])
        assert header == ["alpha-CROWN", "BaB", "CROWN", "IBP"]
        assert table.count("<tr>") == len(demo.NETWORKS) + 1
    in_matrix = sum(1 for c in doc["checks"] if c["suite"] == "soundness" and "[" in c["metric"])
    assert in_matrix == 4 * len(demo.NETWORKS) * len(demo.VERIFIERS)
    rows = re.findall(r'<tr class="(?:fail|pass|info)"', section)
    assert len(rows) == len(demo.NETWORKS)  # only the per-network check stays a table row


def test_a_failing_matrix_cell_is_red_and_listed_first():
    doc = demo.document(failing=0)
    cell = next(c for c in doc["checks"] if c["metric"] == "unsat_on_counterexample[CROWN]")
    cell.update(value=2, outcome="fail", margin=-2)
    doc["verdict"] = "FAIL"
    page = render(doc)
    assert 'class="cell fail"' in page
    assert "unsat_on_counterexample[CROWN]</b> on " + cell["eval_set"] in first_screen(page)


def test_every_artifact_kind_is_drawn():
    doc = demo.document()
    page = render(doc)
    kinds = {a["kind"] for a in doc["artifacts"]}
    assert kinds == {"series", "bars", "table", "images"}
    series = sum(a["kind"] in ("series", "bars") for a in doc["artifacts"])
    # plus the reliability diagram and per-class recall drawn from the accuracy checks
    assert page.count("<svg ") == series + 2
    assert page.count('class="fig seriesfig"') == 0  # series and bars are plots
    assert page.count("plotfig") == 2 and page.count("figfig") == series
    images = sum(len(a["data"]["items"]) for a in doc["artifacts"] if a["kind"] == "images")
    assert page.count('src="data:image/png;base64,') == images
    assert "errors by category: fmnist_test" in page  # the multi-label table
    assert "excluded (fewer than 100 samples)" in page  # the fairness bars' note
    for suite in ("accuracy", "multilabel", "adversarial", "corruptions", "patch",
                  "fairness", "soundness"):  # fmt: skip
        assert f'id="suite-{suite}"' in page


def test_suites_without_checks_or_pictures_have_no_section(page):
    assert re.findall(r'<section class="suite[ \w]*" id="suite-(\w+)"', page) == [
        "accuracy",
        "sanity",
    ]


def test_html_fetches_nothing():
    page = render(demo.document()).lower()
    for attr in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attr.startswith(("data:", "#")), attr
    for needle in ("<script", "<link", "@import", "<iframe", "<object"):
        assert needle not in page
    assert all(ref.startswith("#") for ref in re.findall(r"url\(([^)]*)\)", page))
    outside_namespaces = re.sub(r'xmlns(:\w+)?="[^"]*"', "", page)
    assert "http" not in outside_namespaces


def test_html_escapes_user_text(page):
    assert "Shirt &lt;b&gt;" in page and "Shirt <b>" not in page
    assert "boom &lt;here&gt;" in page


def test_html_is_identical_for_identical_documents():
    assert render(demo.document()) == render(copy.deepcopy(demo.document()))


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
