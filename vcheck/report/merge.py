"""Merge the metrics documents of one model's runs split over machines into one report.

    python -m vcheck.report.merge a.metrics.json b.metrics.json -o merged

writes ``merged.metrics.json`` and ``merged.html`` (``-o`` is a path without suffix). The
runs must be of the same model (fingerprint), profile and result-determining settings, and
share any eval set they both used (fingerprint); each check and test may appear in several
documents only with identical content (a test run twice with different results cannot be
merged silently). The merged verdict is recomputed from the union; a run that ended in ERROR
keeps the merged verdict ERROR. A document that cannot be merged is refused with one line
and exit status 4, as vcheck's usage errors are.

Public names: :func:`merge`, :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vcheck.errors import InvalidArgument
from vcheck.report.document import SCHEMA_ID, SCHEMA_VERSION, build_document, check_key

# Settings that change what a run measures; the others (paths, device) may differ.
RESULT_SETTINGS = ("seed", "gate", "max_samples", "confidence", "bootstrap_resamples",
                   "data_root", "eval_sets", "soundness_instances")  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise InvalidArgument(f"{path}: not a vcheck metrics JSON")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise InvalidArgument(
            f"{path}: schema_version={doc.get('schema_version')!r}; merge needs version "
            f"{SCHEMA_VERSION} (rerun with this vcheck)"
        )
    return doc


def _same(what: str, first: Any, other: Any, a: str, b: str) -> None:
    if first != other:
        raise InvalidArgument(
            f"{b} has {what} {str(other)[:80]!r}, {a} has {str(first)[:80]!r}: merge only runs "
            "of one model, data, profile and settings"
        )


def _union(what: str, items: dict[Any, Any], key: Any, value: Any, names: tuple[str, str]) -> None:
    if key in items and items[key] != value:
        raise InvalidArgument(
            f"{names[1]} and {names[0]} both have {what} {key!r} with different results; "
            "merge runs that split the tests, not repeated runs"
        )
    items[key] = value


def merge(docs: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """One document from several of the same model (see the module docstring)."""
    first, a = docs[0], names[0]
    checks: dict[Any, Any] = {}
    outcomes: dict[str, str] = {}
    problems: dict[str, Any] = {}
    artifacts: dict[Any, Any] = {}
    eval_sets: dict[str, Any] = {}
    per_sample: dict[str, Any] = {}
    errors = []
    for doc, b in zip(docs, names, strict=True):
        model, base = doc["model"], first["model"]
        if model.get("fingerprint") != base.get("fingerprint"):
            raise InvalidArgument(
                f"{b} is model {model.get('name')} ({str(model.get('fingerprint'))[:12]}), "
                f"{a} is model {base.get('name')} ({str(base.get('fingerprint'))[:12]}): "
                "merge only runs of one model"
            )
        _same("profile", doc["profile"].get("sha256"), first["profile"].get("sha256"), a, b)
        for key in RESULT_SETTINGS:
            _same(f"setting {key}", first["settings"].get(key), doc["settings"].get(key), a, b)
        pair = (a, b)
        for es in doc["eval_sets"]:
            _union("eval set", eval_sets, es["name"], es, pair)
        for name, data in doc["per_sample"].items():
            _union("per-sample results of", per_sample, name, data, pair)
        for c in doc["checks"]:
            _union("check", checks, check_key(c), c, pair)
        for nodeid, outcome in doc["test_outcomes"].items():
            _union("test", outcomes, nodeid, outcome, pair)
        for p in doc["problems"]:
            _union("problem in test", problems, p["nodeid"], p, pair)
        for art in doc["artifacts"]:
            key = (art["suite"], art["eval_set"], art["name"], art["nodeid"])
            _union("picture", artifacts, key, art, pair)
        if doc.get("error"):
            errors.append(f"{b}: {doc['error']['stage']}: {doc['error']['reason']}")
    error = None
    if errors:
        error = {"stage": "merging runs", "reason": "; ".join(errors)}
    return build_document(
        model=first["model"],
        eval_sets=list(eval_sets.values()),
        settings=first["settings"],
        profile=first["profile"],
        checks=list(checks.values()),
        test_outcomes=outcomes,
        artifacts=list(artifacts.values()),
        problems=list(problems.values()),
        per_sample=per_sample,
        error=error,
        baseline=first.get("baseline"),
        versions_=first["versions"],
    )


def main(argv: list[str] | None = None) -> int:
    from vcheck.report.document import dumps, write_atomic
    from vcheck.report.html import render

    parser = argparse.ArgumentParser(
        prog="python -m vcheck.report.merge",
        description="Merge vcheck metrics JSON files of one model's split runs into one "
        "metrics JSON and one HTML report.",
    )
    parser.add_argument("documents", nargs="+", type=Path, metavar="METRICS_JSON")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="PATH",
        help="writes PATH.metrics.json and PATH.html",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        docs = [_load(p) for p in args.documents]
        merged = merge(docs, [str(p) for p in args.documents])
    except InvalidArgument as exc:
        print(f"vcheck.report.merge: error: {exc}", file=sys.stderr)
        return 4
    out = args.output
    write_atomic(out.with_name(out.name + ".metrics.json"), dumps(merged))
    write_atomic(out.with_name(out.name + ".html"), render(merged))
    counts = merged["summary"]["checks"]
    print(
        f"vcheck {merged['verdict']}: {counts['fail']} failed, {counts['pass']} passed, "
        f"{counts['info']} info; wrote {out}.metrics.json and {out}.html"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
