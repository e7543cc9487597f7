"""Render a metrics document (see :mod:`vcheck.report.document`) as one self-contained page.

No external requests: CSS is inline and there are no scripts or images to fetch, so the file
opens offline and can be attached to a CI run as is.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330}
h1{margin:0 0 .3rem}h2{margin-top:2rem;border-bottom:1px solid #d8dce4;padding-bottom:.2rem}
.verdict{display:inline-block;padding:.35rem 1rem;border-radius:6px;font-size:1.6rem;
font-weight:700;color:#fff}.PASS{background:#1a7f37}.FAIL{background:#cf222e}
table{border-collapse:collapse;margin:.6rem 0;min-width:40rem}
th,td{border:1px solid #d8dce4;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#fff0f0}tr.fail td.outcome{color:#cf222e;font-weight:700}
tr.pass td.outcome{color:#1a7f37;font-weight:600}tr.info td.outcome{color:#57606a}
.meta td:first-child{font-weight:600;white-space:nowrap}code{font-size:12px}
.muted{color:#57606a}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _threshold(check: dict[str, Any]) -> str:
    if check["threshold"] is None:
        return '<span class="muted">none</span>'
    op = "≥" if check["direction"] == "min" else "≤"
    return f"{op} {check['threshold']:g}"


def _check_rows(checks: list[dict[str, Any]]) -> str:
    order = {"fail": 0, "pass": 1, "info": 2}
    rows = []
    for c in sorted(checks, key=lambda c: order[c["outcome"]]):
        ci = f"[{c['ci'][0]:.4f}, {c['ci'][1]:.4f}]" if c["ci"] else "—"
        where = escape(c["eval_set"] + (f" / {c['slice']}" if c["slice"] else ""))
        note = ""
        if "worst_class" in c["details"]:
            note = f' <span class="muted">({escape(c["details"]["worst_class"])})</span>'
        rows.append(
            f'<tr class="{c["outcome"]}"><td>{escape(c["metric"])}{note}</td><td>{where}</td>'
            f'<td class="num">{_fmt(c["value"])}</td><td class="num">{ci}</td>'
            f'<td>{_threshold(c)}</td><td class="num">{_fmt(c["margin"])}</td>'
            f'<td class="outcome">{c["outcome"].upper()}</td><td class="num">{c["n"]}</td>'
            f"<td>{escape(c['gate'])}</td></tr>"
        )
    return "".join(rows)


def render(document: dict[str, Any], duration_s: float | None = None) -> str:
    """The HTML page for ``document``; ``duration_s`` is shown but not stored in the JSON."""
    model = document["model"]
    settings = document["settings"]
    counts = document["summary"]["checks"]
    tests = document["summary"]["tests"]
    meta = [
        (
            "Model",
            f'{escape(model["name"])} <span class="muted">({escape(model["source"])})</span>',
        ),
        ("Model fingerprint", f"<code>{escape(model['fingerprint'])}</code>"),
        ("Domain / classes", f"{escape(model['domain'])} / {model['num_classes']}"),
    ]
    for es in document["eval_sets"]:
        meta.append(
            (
                f"Eval set {escape(es['name'])}",
                f"n={es['n']} <code>{escape(es['fingerprint'])}</code> "
                f'<span class="muted">{escape(es["source"])}</span>',
            )
        )
    profile = document["profile"]
    meta += [
        (
            "Profile",
            f"{escape(str(profile['path']))} <code>{escape(str(profile['sha256']))}</code>",
        ),
        ("Seed / gate", f"{settings['seed']} / {escape(settings['gate'])}"),
        ("Max samples", _fmt(settings.get("max_samples"))),
        ("Versions", escape(", ".join(f"{k} {v}" for k, v in document["versions"].items()))),
        ("Checks", f"{counts['fail']} failed, {counts['pass']} passed, {counts['info']} info"),
        ("Tests", escape(", ".join(f"{v} {k}" for k, v in sorted(tests.items())))),
    ]
    if duration_s is not None:
        meta.append(("Duration", f"{duration_s:.1f} s"))
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for check in document["checks"]:
        by_suite[check["suite"]].append(check)
    sections = []
    header = (
        "<tr><th>Metric</th><th>Eval set / slice</th><th>Value</th><th>Interval</th>"
        "<th>Threshold</th><th>Margin</th><th>Outcome</th><th>n</th><th>Gate</th></tr>"
    )
    for suite in sorted(
        by_suite, key=lambda s: (-sum(c["outcome"] == "fail" for c in by_suite[s]), s)
    ):
        sections.append(
            f"<h2>{escape(suite)}</h2><table>{header}{_check_rows(by_suite[suite])}</table>"
        )
    if document["problems"]:
        rows = "".join(
            f'<tr class="{"fail" if p["outcome"] != "skipped" else "info"}"><td>'
            f'<code>{escape(p["nodeid"])}</code></td><td class="outcome">'
            f"{escape(p['outcome'].upper())}</td><td>{escape(p['message'])}</td></tr>"
            for p in document["problems"]
        )
        sections.append(
            "<h2>Tests that failed, errored or were skipped outside a check</h2>"
            f"<table><tr><th>Test</th><th>Outcome</th><th>Reason</th></tr>{rows}</table>"
        )
    verdict = document["verdict"]
    meta_rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in meta)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>vcheck {verdict}: {escape(model['name'])}</title><style>{_CSS}</style></head>"
        f'<body><h1>vcheck release gate</h1><p><span class="verdict {verdict}" '
        f'id="verdict">{verdict}</span></p><table class="meta">{meta_rows}</table>'
        + "".join(sections)
        + "</body></html>\n"
    )
