"""JSON Schema (draft 2020-12) of metrics.json, schema_version 1.

Fields:
- ``verdict``: "PASS" or "FAIL" for the whole run.
- ``model``: name, fingerprint (sha256 of the state dict), source, domain, classes...
- ``eval_sets``: name, n, fingerprint, source of each eval set used.
- ``settings``: the resolved vcheck configuration; ``profile``: path and sha256.
- ``checks``: one entry per gated or informational measurement (value, ci, threshold,
  direction, gate, outcome, margin, n, details).
- ``problems``: tests that failed, errored or were skipped other than through a check.
- ``artifacts``: data for the report's pictures, one entry per recorded figure (suite, name,
  kind: series / bars / table / images, eval_set, nodeid, data; see
  ``vcheck.report.artifacts``).
- ``per_sample``: per eval set, top-1 correctness bits (see ``document.pack_bits``) and the
  sha256 of the ordered ids, for paired (McNemar) comparison against a baseline run.
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
    },
}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vcheck metrics.json",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "verdict",
        "model",
        "eval_sets",
        "settings",
        "profile",
        "versions",
        "summary",
        "checks",
        "problems",
        "artifacts",
        "per_sample",
    ],
    "properties": {
        "schema": {"const": "vcheck.metrics"},
        "schema_version": {"const": 1},
        "verdict": {"enum": ["PASS", "FAIL"]},
        "model": {
            "type": "object",
            "required": ["name", "fingerprint", "source", "domain", "num_classes"],
            "properties": {"fingerprint": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
        },
        "eval_sets": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "n", "fingerprint", "source"]},
        },
        "settings": {"type": "object", "required": ["seed", "gate"]},
        "profile": {"type": "object", "required": ["path", "sha256"]},
        "versions": {"type": "object", "required": ["vcheck", "torch"]},
        "summary": {
            "type": "object",
            "required": ["checks", "tests"],
            "properties": {
                "checks": {"type": "object", "required": ["pass", "fail", "info"]},
                "tests": {"type": "object"},
            },
        },
        "checks": {"type": "array", "items": CHECK},
        "problems": {
            "type": "array",
            "items": {"type": "object", "required": ["nodeid", "outcome", "message"]},
        },
        "artifacts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["suite", "name", "kind", "eval_set", "nodeid", "data"],
                "properties": {
                    "kind": {"enum": ["series", "bars", "table", "images"]},
                    "data": {"type": "object"},
                },
            },
        },
        "per_sample": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["n", "ids_sha256", "top1_correct"],
            },
        },
    },
}
