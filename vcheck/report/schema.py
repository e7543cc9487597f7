"""JSON Schema (draft 2020-12) of metrics.json, schema_version 2.

Fields:
- ``schema``: "vcheck.metrics"; ``schema_version``: 2 (bumped on any incompatible change;
  ``--baseline`` reads versions 1 and 2).
- ``verdict``: "PASS", "FAIL" or "ERROR" for the whole run. PASS: some test ran, no check
  failed, no test failed or errored. ERROR: the run did not complete (interrupted, or vcheck
  crashed after the tests); ``error`` then says where and why.
- ``error``: null, or ``{"stage", "reason"}``.
- ``model``: name, fingerprint (sha256 of the state dict), source, domain, classes...
- ``eval_sets``: name, n, fingerprint, source of each eval set used.
- ``settings``: the resolved vcheck configuration; ``profile``: path and sha256.
- ``versions``: vcheck, python, torch, torchvision.
- ``baseline``: null, or the ``--baseline`` document compared with (path, model name and
  fingerprint, number of metrics compared); the comparisons are checks of suite "baseline".
- ``summary``: counts of checks by outcome and of tests by outcome.
- ``test_outcomes``: each test's node id -> passed / failed / error / skipped (what
  ``vcheck.report.merge`` needs to merge runs split over machines without double counting).
- ``checks``: one entry per gated or informational measurement (value, ci, threshold,
  direction, gate, outcome, margin, n, details), sorted by suite, eval set, slice, metric,
  node id. ``margin``: how far the gated value clears the threshold (negative: misses).
- ``problems``: tests that failed, errored or were skipped other than through a check.
- ``artifacts``: data for the report's pictures, one entry per recorded figure (suite, name,
  kind: series / bars / table / images, eval_set, nodeid, data; see
  ``vcheck.report.artifacts``).
- ``per_sample``: per eval set, top-1 correctness bits (see ``document.pack_bits``) and the
  sha256 of the ordered ids, for paired (McNemar) comparison against a baseline run.

A change to this schema bumps ``SCHEMA_VERSION`` in ``vcheck.report.document`` and
``tests/test_report.py`` validates documents against it.
"""

from __future__ import annotations

_number_or_null = {"type": ["number", "null"]}

CHECK = {
    "type": "object",
    "required": [
        "suite",
        "metric",
        "eval_set",
        "value",
        "n",
        "threshold",
        "direction",
        "ci",
        "ci_method",
        "gate",
        "outcome",
        "margin",
        "slice",
        "nodeid",
        "details",
    ],
    "additionalProperties": False,
    "properties": {
        "suite": {"type": "string"},
        "metric": {"type": "string"},
        "eval_set": {"type": "string"},
        "slice": {"type": ["string", "null"]},
        "value": _number_or_null,
        "n": {"type": "integer", "minimum": 0},
        "threshold": _number_or_null,
        "direction": {"enum": ["min", "max", None]},
        "ci": {
            "oneOf": [
                {"type": "null"},
                {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            ]
        },
        "ci_method": {"type": ["string", "null"]},
        "gate": {"enum": ["point", "lower", "upper"]},
        "outcome": {"enum": ["pass", "fail", "info"]},
        "margin": _number_or_null,
        "nodeid": {"type": "string"},
        "details": {"type": "object"},
        "exact": {"type": "boolean"},
    },
}

_NUMBERS = {"type": "array", "items": _number_or_null}
_OPTIONAL_NUMBERS = {"oneOf": [{"type": "null"}, _NUMBERS]}


def _kind(kind: str, required: list[str], properties: dict) -> dict:
    return {
        "if": {"properties": {"kind": {"const": kind}}},
        "then": {
            "properties": {
                "data": {"type": "object", "required": required, "properties": properties}
            }
        },
    }


ARTIFACT = {
    "type": "object",
    "required": ["suite", "name", "kind", "eval_set", "nodeid", "data"],
    "properties": {
        "kind": {"enum": ["series", "bars", "table", "images"]},
        "data": {"type": "object"},
    },
    "allOf": [
        _kind(
            "series",
            ["x_label", "y_label", "series"],
            {
                "series": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["label", "x", "y", "low", "high"],
                        "properties": {
                            "x": _NUMBERS,
                            "y": _NUMBERS,
                            "low": _OPTIONAL_NUMBERS,
                            "high": _OPTIONAL_NUMBERS,
                        },
                    },
                }
            },
        ),
        _kind(
            "bars",
            ["labels", "values", "low", "high", "n", "value_label"],
            {
                "labels": {"type": "array", "items": {"type": "string"}},
                "values": _NUMBERS,
                "low": _OPTIONAL_NUMBERS,
                "high": _OPTIONAL_NUMBERS,
            },
        ),
        _kind(
            "table",
            ["columns", "rows"],
            {"columns": {"type": "array"}, "rows": {"type": "array", "items": {"type": "array"}}},
        ),
        _kind(
            "images",
            ["items"],
            {
                "items": {
                    "type": "array",
                    "items": {"type": "object", "required": ["png", "caption"]},
                }
            },
        ),
    ],
}
"""One entry of ``artifacts``: the data of each kind as built by ``vcheck.report.artifacts``."""

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vcheck metrics.json",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "verdict",
        "error",
        "model",
        "eval_sets",
        "settings",
        "profile",
        "versions",
        "baseline",
        "summary",
        "test_outcomes",
        "checks",
        "problems",
        "artifacts",
        "per_sample",
    ],
    "properties": {
        "schema": {"const": "vcheck.metrics"},
        "schema_version": {"const": 2},
        "verdict": {"enum": ["PASS", "FAIL", "ERROR"]},
        "error": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["stage", "reason"],
                    "properties": {"stage": {"type": "string"}, "reason": {"type": "string"}},
                },
            ]
        },
        "model": {
            "type": "object",
            "required": ["name", "fingerprint", "source", "domain", "num_classes"],
            # empty only in the document of a run that crashed before its model was known
            "properties": {"fingerprint": {"type": "string", "pattern": "^([0-9a-f]{64})?$"}},
        },
        "eval_sets": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "n", "fingerprint", "source"]},
        },
        "settings": {"type": "object", "required": ["seed", "gate"]},
        "profile": {"type": "object", "required": ["path", "sha256"]},
        "versions": {"type": "object", "required": ["vcheck", "torch"]},
        "baseline": {
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["path", "model", "fingerprint", "compared"],
                    "properties": {"compared": {"type": "integer", "minimum": 0}},
                },
            ]
        },
        "test_outcomes": {
            "type": "object",
            "additionalProperties": {"enum": ["passed", "failed", "error", "skipped"]},
        },
        "summary": {
            "type": "object",
            "required": ["checks", "tests"],
            "properties": {
                "checks": {"type": "object", "required": ["pass", "fail", "info"]},
                "tests": {
                    "type": "object",
                    "required": ["passed", "failed", "error", "skipped"],
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            },
        },
        "checks": {"type": "array", "items": CHECK},
        "problems": {
            "type": "array",
            "items": {"type": "object", "required": ["nodeid", "outcome", "message"]},
        },
        "artifacts": {"type": "array", "items": ARTIFACT},
        "per_sample": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["n", "ids_sha256", "top1_correct"],
                "properties": {
                    "n": {"type": "integer", "minimum": 0},
                    "ids_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "top1_correct": {"type": "string"},
                },
            },
        },
    },
}
