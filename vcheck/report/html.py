"""Render a metrics document (see :mod:`vcheck.report.document`) as one self-contained page.

What a release manager needs comes first: the verdict, the failing checks and any test that
errored, all on the first screen; then provenance (model and data fingerprints, profile,
seed, versions, duration); then one section per suite with its pictures and its checks,
grouped by eval set and slice, failures first. Checks named ``metric[param]`` on several eval
sets (the soundness suite's ``unsat_on_counterexample[CROWN]`` on each network) are drawn as
one eval set x param matrix per metric rather than as hundreds of rows.

No external requests: CSS is inline, pictures are inline SVG (see :mod:`vcheck.report.figures`)
or ``data:`` PNGs, and there are no scripts. Every suite section after the first is laid
out lazily by the browser (``content-visibility: auto``), so thousands of checks still paint
at once.

Public names: :func:`render`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from html import escape
from typing import Any

# Known suites in reading order; any other suite follows, alphabetically.
SUITE_ORDER = (
    "accuracy",
    "multilabel",
    "multi_label",
    "adversarial",
    "corruptions",
    "patch",
    "fairness",
    "soundness",
    "baseline",
)
MAX_LISTED_FAILURES = 25  # the first screen lists this many; the sections hold the rest
_OUTCOME_ORDER = {"fail": 0, "pass": 1, "info": 2}
_MATRIX_METRIC = re.compile(r"^(?P<base>.+)\[(?P<param>[^\[\]]+)\]$")

_CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1d2330;background:#fff}
main{max-width:1400px;margin:0 auto;padding:1rem 1.5rem 3rem}
header.top{display:flex;align-items:center;gap:1.2rem;padding:.4rem 0 .8rem;
border-bottom:1px solid #d8dce4}
.verdict{display:inline-block;min-width:7.5rem;text-align:center;padding:.45rem 1.1rem;
border-radius:8px;font-size:2rem;font-weight:800;letter-spacing:.04em;color:#fff}
.verdict.PASS{background:#1a7f37}.verdict.FAIL{background:#cf222e}.verdict.ERROR{background:#9a6700}
h1{font-size:1.35rem;margin:0}h2{font-size:1.15rem;margin:1.6rem 0 .5rem;
border-bottom:1px solid #d8dce4;padding-bottom:.2rem}h3{font-size:1rem;margin:1rem 0 .3rem}
.sub{margin:.15rem 0 0;color:#57606a}
.failing{margin:.8rem 0;padding:.5rem 1rem;border-left:6px solid #cf222e;background:#fff5f5}
.failing h2{margin:.2rem 0 .4rem;border:0;color:#a40e26}
.failing ol{margin:.2rem 0;padding-left:1.4rem}.failing li{margin:.25rem 0}
.failing .suite-tag{font-size:12px;color:#57606a;border:1px solid #d8dce4;border-radius:4px;
padding:0 .3rem;margin-right:.3rem}
.allclear{margin:.8rem 0;padding:.5rem 1rem;border-left:6px solid #1a7f37;background:#f3fbf5}
.errorbox{margin:.8rem 0;padding:.5rem 1rem;border-left:6px solid #9a6700;background:#fff8e5}
.note{color:#57606a;font-size:12px;overflow-wrap:anywhere}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.4rem 0}
dl.meta dt{font-weight:600}dl.meta dd{margin:0;overflow-wrap:anywhere}
code{font-size:12px}.muted{color:#57606a}
nav.toc a{margin-right:1rem;white-space:nowrap}
section.suite.later{content-visibility:auto;contain-intrinsic-size:auto 900px}
.counts{font-size:.85rem;font-weight:400;color:#57606a;margin-left:.6rem}
.counts .nfail{color:#cf222e;font-weight:700}
.figs{display:flex;flex-wrap:wrap;gap:1rem;margin:.6rem 0}
figure{margin:0}figure.fig{border:1px solid #d8dce4;border-radius:6px;padding:.3rem}
figure.fig figcaption{font-weight:600;font-size:13px;margin:.1rem .3rem .3rem}
svg.plot{display:block;width:403px;max-width:100%;height:auto}
.thumbs{display:flex;flex-wrap:wrap;gap:.5rem;max-width:1100px}
.thumbs figure{width:110px;font-size:11px;text-align:center}
.thumbs img{image-rendering:pixelated;width:96px;height:auto;border:1px solid #d8dce4}
table{border-collapse:collapse;margin:.4rem 0}
th,td{border:1px solid #d8dce4;padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.num{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}
table.checks{width:100%;max-width:1300px}
tr.fail td{background:#fff0f0}td.outcome{font-weight:700}
tr.fail td.outcome,td.cell.fail{color:#cf222e}tr.pass td.outcome{color:#1a7f37}
tr.info td.outcome{color:#57606a;font-weight:400}
tr.group th{background:#e9edf3;text-align:left}
table.matrix td.cell{text-align:center;font-variant-numeric:tabular-nums}
td.cell.fail{background:#ffd8d3;font-weight:700}td.cell.pass{background:#e6f6ea}
td.cell.info{background:#f6f8fa}td.cell.none{background:#fff}
"""


# -- formatting ---------------------------------------------------------------------------------


def _num(value: Any) -> str:
    """A value for a table cell: integers as such, 4 decimals, tiny numbers in e-notation;
    never ``-0.0000`` (a zero is ``0`` and a tiny negative number keeps its digits)."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e6:
            return f"{value:.4f}".replace("-", "−")
        return f"{value:.2e}".replace("-", "−")
    return escape(str(value))


def _signed(value: float | None) -> str:
    """A margin: explicit sign, the same digits as :func:`_num`."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    text = _num(abs(float(value)))
    return ("+" if value > 0 else "−") + text


def _interval(ci: list[float] | None) -> str:
    return f"[{_num(ci[0])}, {_num(ci[1])}]" if ci else "—"


def _threshold(check: dict[str, Any]) -> str:
    if check["threshold"] is None:
        return '<span class="muted">none</span>'
    op = "≥" if check["direction"] == "min" else "≤"
    return f"{op} {check['threshold']:g}".replace("-", "−")


def _where(check: dict[str, Any]) -> str:
    return check["eval_set"] + (f" / {check['slice']}" if check["slice"] else "")


def _human(name: str) -> str:
    return name.replace("_", " ")


def _suite_rank(suite: str) -> tuple[int, str]:
    return (SUITE_ORDER.index(suite) if suite in SUITE_ORDER else len(SUITE_ORDER), suite)


def _counts(checks: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = {"fail": 0, "pass": 0, "info": 0}
    for c in checks:
        out[c["outcome"]] += 1
    return out


def _counts_html(counts: dict[str, int]) -> str:
    parts = []
    if counts["fail"]:
        parts.append(f'<span class="nfail">{counts["fail"]} failed</span>')
    parts.append(f"{counts['pass']} passed")
    if counts["info"]:
        parts.append(f"{counts['info']} info")
    return f'<span class="counts">{" · ".join(parts)}</span>'


def _note(check: dict[str, Any], limit: int = 400) -> str:
    details = check["details"]
    bits = []
    if details.get("worst_class"):
        bits.append(f"worst class: {details['worst_class']}")
    if details.get("note"):
        bits.append(str(details["note"]))
    if details.get("interval"):
        bits.append(f"interval: {details['interval']}")
    if details.get("gate_refusal"):
        bits.append(f"cannot be gated: {details['gate_refusal']}")
    text = "; ".join(bits)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f'<div class="note">{escape(text)}</div>' if text else ""


# -- the first screen ---------------------------------------------------------------------------


def _failing_list(checks: list[dict[str, Any]], ids: dict[int, str]) -> str:
    failing = [c for c in checks if c["outcome"] == "fail"]
    items = []
    for c in failing[:MAX_LISTED_FAILURES]:
        items.append(
            f'<li class="failing-check"><span class="suite-tag">{escape(c["suite"])}</span>'
            f'<a href="#{ids[id(c)]}"><b>{escape(c["metric"])}</b> on {escape(_where(c))}</a>'
            f" = {_num(c['value'])} {_interval(c['ci'])} (n={c['n']}): threshold "
            f"{_threshold(c)}, margin {_signed(c['margin'])}{_note(c, 240)}</li>"
        )
    more = len(failing) - MAX_LISTED_FAILURES
    tail = f"<p>… and {more} more failing checks in the sections below.</p>" if more > 0 else ""
    return f"<ol>{''.join(items)}</ol>{tail}" if items else ""


def _problem_list(problems: list[dict[str, str]], outcomes: tuple[str, ...]) -> str:
    items = [
        f"<li><code>{escape(p['nodeid'])}</code> <b>{escape(p['outcome'])}</b>: "
        f"{escape(p['message'])}</li>"
        for p in problems
        if p["outcome"] in outcomes
    ]
    return f"<ul>{''.join(items)}</ul>" if items else ""


def _first_screen(document: dict[str, Any], ids: dict[int, str], duration: float | None) -> str:
    verdict = document["verdict"]
    model = document["model"]
    counts = document["summary"]["checks"]
    tests = document["summary"]["tests"]
    total = counts["pass"] + counts["fail"] + counts["info"]
    sub = [f"{counts['fail']} of {total} checks failed"]
    ran = ", ".join(
        f"{tests[k]} {k}" for k in ("failed", "error", "passed", "skipped") if tests.get(k)
    )
    sub.append(f"tests: {ran}" if ran else "no test ran")
    if duration is not None:
        sub.append(f"{duration:.1f} s")
    head = (
        f'<header class="top"><div class="verdict {verdict}" id="verdict">{verdict}</div>'
        f"<div><h1>vcheck release gate: {escape(str(model.get('name')))}</h1>"
        f'<p class="sub">{" · ".join(escape(s) for s in sub)}</p></div></header>'
    )
    body = []
    error = document.get("error")
    if error:
        body.append(
            f'<section class="errorbox" id="error"><h2>The run did not complete</h2>'
            f"<p><b>{escape(error['stage'])}</b>: {escape(error['reason'])}</p></section>"
        )
    failing = _failing_list(document["checks"], ids)
    problems = _problem_list(document["problems"], ("failed", "error"))
    if failing or problems:
        parts = ['<section class="failing" id="failing">']
        if failing:
            parts.append(f"<h2>Failing checks ({counts['fail']})</h2>{failing}")
        if problems:
            parts.append(f"<h2>Tests that failed or errored outside a check</h2>{problems}")
        parts.append("</section>")
        body.append("".join(parts))
    elif verdict == "PASS":
        body.append(
            f'<section class="allclear" id="failing"><b>Every gate passed</b>: '
            f"{counts['pass']} checks passed, {counts['info']} informational.</section>"
        )
    elif not error:
        body.append(
            '<section class="errorbox" id="failing"><b>Nothing was verified</b>: no test ran '
            "or every gate was skipped (see the skipped tests below).</section>"
        )
    return head + "".join(body)


def _provenance(document: dict[str, Any], duration: float | None) -> str:
    model = document["model"]
    settings = document["settings"]
    rows: list[tuple[str, str]] = [
        (
            "Model",
            f"{escape(str(model.get('name')))} <span class='muted'>"
            f"({escape(str(model.get('source')))})</span>",
        ),
        ("Model fingerprint", f"<code>{escape(str(model.get('fingerprint')))}</code>"),
        (
            "Domain / classes / parameters",
            f"{escape(str(model.get('domain')))} / {model.get('num_classes')} / "
            f"{_num(model.get('parameters'))}",
        ),
    ]
    for es in document["eval_sets"]:
        rows.append(
            (
                f"Eval set {escape(es['name'])}",
                f"n={es['n']} <code>{escape(es['fingerprint'])}</code> "
                f"<span class='muted'>{escape(str(es['source']))}</span>",
            )
        )
    profile = document["profile"]
    rows += [
        (
            "Profile",
            f"{escape(str(profile['path']))} <code>{escape(str(profile['sha256']))}</code>",
        ),
        (
            "Seed / gate / confidence",
            f"{settings.get('seed')} / {escape(str(settings.get('gate')))} / "
            f"{settings.get('confidence')}",
        ),
        ("Max samples", _num(settings.get("max_samples"))),
        ("Versions", escape(", ".join(f"{k} {v}" for k, v in document["versions"].items()))),
    ]
    baseline = document.get("baseline")
    if baseline:
        rows.append(
            (
                "Baseline",
                f"{escape(str(baseline['path']))}: {escape(str(baseline['model']))} "
                f"<code>{escape(str(baseline['fingerprint']))}</code>, "
                f"{baseline['compared']} metrics compared",
            )
        )
    if duration is not None:
        rows.append(("Duration", f"{duration:.1f} s"))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<section id="provenance"><h2>Provenance</h2><dl class="meta">{items}</dl></section>'


# -- suite sections -----------------------------------------------------------------------------


def _check_row(c: dict[str, Any], row_id: str, show_where: bool = False) -> str:
    where = f"<td>{escape(_where(c))}</td>" if show_where else ""
    return (
        f'<tr class="{c["outcome"]}" id="{row_id}"><td>{escape(c["metric"])}{_note(c)}</td>'
        f'{where}<td class="num">{_num(c["value"])}</td><td class="num">{_interval(c["ci"])}'
        f'</td><td class="num">{_threshold(c)}</td><td class="num">{_signed(c["margin"])}</td>'
        f'<td class="outcome">{c["outcome"].upper()}</td><td class="num">{c["n"]}</td></tr>'
    )


def _checks_table(checks: list[dict[str, Any]], ids: dict[int, str]) -> str:
    """Rows grouped by eval set / slice (groups with failures first), failures first."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in checks:
        groups[_where(c)].append(c)
    header = (
        "<th>Value</th><th>Interval</th><th>Threshold</th><th>Margin</th><th>Outcome</th>"
        "<th>n</th></tr>"
    )
    if len(groups) > 1 and len(checks) < 2 * len(groups):  # one check per eval set: no groups
        members = sorted(checks, key=lambda c: (_OUTCOME_ORDER[c["outcome"]], c["metric"],
                                                _where(c)))  # fmt: skip
        rows = "".join(_check_row(c, ids[id(c)], show_where=True) for c in members)
        head = f"<tr><th>Metric</th><th>Eval set / slice</th>{header}"
        return f'<table class="checks">{head}{rows}</table>'
    order = sorted(groups, key=lambda g: (-sum(c["outcome"] == "fail" for c in groups[g]), g))
    parts = []
    for name in order:
        if len(groups) > 1:
            parts.append(f'<tr class="group"><th colspan="7">{escape(name)}</th></tr>')
        members = sorted(groups[name], key=lambda c: (_OUTCOME_ORDER[c["outcome"]], c["metric"]))
        parts.extend(_check_row(c, ids[id(c)]) for c in members)
    title = "" if len(groups) > 1 else f"<h3>{escape(order[0])}</h3>"
    head = f"<tr><th>Metric</th>{header}"
    return f'{title}<table class="checks">{head}{"".join(parts)}</table>'


def _split_matrix(checks: list[dict[str, Any]]):
    """Checks named ``base[param]`` with more than one cell per base go to matrices."""
    by_base: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for c in checks:
        m = _MATRIX_METRIC.match(c["metric"])
        if m:
            by_base[m["base"]].append((m["param"], c))
    matrices = {b: cells for b, cells in by_base.items() if len(cells) > 1}
    in_matrix = {id(c) for cells in matrices.values() for _, c in cells}
    return matrices, [c for c in checks if id(c) not in in_matrix]


def _matrix(base: str, cells: list[tuple[str, dict[str, Any]]], ids: dict[int, str]) -> str:
    params = sorted({p for p, _ in cells}, key=str.lower)
    rows = sorted({_where(c) for _, c in cells})
    grid = {(_where(c), p): c for p, c in cells}
    thresholds = {_threshold(c) for _, c in cells if c["threshold"] is not None}
    rule = f" (threshold {thresholds.pop()})" if len(thresholds) == 1 else ""
    counts = _counts(c for _, c in cells)
    head = "".join(f"<th>{escape(p)}</th>" for p in params)
    body = []
    for r in rows:
        tds = []
        for p in params:
            c = grid.get((r, p))
            if c is None:
                tds.append('<td class="cell none">—</td>')
                continue
            tip = f"{c['metric']} on {r} = {_num(c['value'])} (n={c['n']}), {c['outcome']}"
            tds.append(
                f'<td class="cell {c["outcome"]}" id="{ids[id(c)]}" title="{escape(tip)}">'
                f"{_num(c['value'])}</td>"
            )
        body.append(f"<tr><th>{escape(r)}</th>{''.join(tds)}</tr>")
    return (
        f"<h3>{escape(base)}{rule} {_counts_html(counts)}</h3>"
        f'<table class="matrix"><tr><th></th>{head}</tr>{"".join(body)}</table>'
    )


def _check_figures(suite_checks: list[dict[str, Any]], suite: str) -> list[tuple[str, str]]:
    """Pictures drawn from checks' details: reliability diagrams, per-class recall."""
    from vcheck.report import figures

    out = []
    for c in suite_checks:
        if c["slice"]:
            continue
        details = c["details"]
        key = f"{suite}-{c['eval_set']}-{c['metric']}"
        if isinstance(details.get("reliability"), dict):
            title = f"Calibration: {c['eval_set']} (ECE {_num(c['value'])})"
            out.append((key, figures.reliability_svg(details["reliability"], title, key)))
        if isinstance(details.get("per_class_recall"), dict):
            recall = details["per_class_recall"]
            names = list(recall)
            sizes = details.get("per_class_n") or {}
            data = {
                "labels": names,
                "values": [recall[k] for k in names],
                "low": None,
                "high": None,
                "n": [sizes[k] for k in names] if set(sizes) >= set(names) else None,
                "value_label": "recall",
            }
            class_ci = details.get("per_class_ci") or {}  # at the run's confidence
            if set(class_ci) >= set(names):
                data["low"] = [class_ci[k][0] for k in names]
                data["high"] = [class_ci[k][1] for k in names]
            elif data["n"] is not None:  # metrics.json of an older run
                from vcheck.functional.intervals import wilson_interval

                cis = [
                    wilson_interval(round(v * n), n) if n else (math.nan, math.nan)
                    for v, n in zip(data["values"], data["n"], strict=True)
                ]
                data["low"] = [lo for lo, _ in cis]
                data["high"] = [hi for _, hi in cis]
            worst = (details.get("worst_class"),)
            title = f"Recall per class: {c['eval_set']}"
            out.append((key, figures.bars_svg(data, title, key, highlight=worst)))
    return out


def _artifact(a: dict[str, Any], key: str) -> tuple[str, str]:
    from vcheck.report import figures

    title = f"{_human(a['name'])}: {a['eval_set']}"
    data, kind = a["data"], a["kind"]
    if kind == "series":
        return "fig", figures.series_svg(data, title, key)
    if kind == "bars":
        svg = figures.bars_svg(data, title, key)
        note = f'<div class="note">{escape(data["note"])}</div>' if data.get("note") else ""
        return "fig", svg + note
    if kind == "table":
        head = "".join(f"<th>{escape(c)}</th>" for c in data["columns"])
        rows = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{_num(v)}</td>'
                if isinstance(v, int | float) and not isinstance(v, bool)
                else f"<td>{escape(str(v))}</td>"
                for v in row
            )
            + "</tr>"
            for row in data["rows"]
        )
        caption = f"<figcaption>{escape(title)}</figcaption>"
        return "table", f"{caption}<table><tr>{head}</tr>{rows}</table>"
    if kind == "images":
        items = []
        for item in data["items"]:
            extra = [
                f"{escape(str(k))}: {escape(str(v))}"
                for k, v in item.items()
                if k not in ("png", "caption")
            ]
            caption = "<br>".join([escape(item["caption"]), *extra])
            items.append(
                f'<figure><img alt="{escape(item["caption"])}" '
                f'src="data:image/png;base64,{escape(item["png"])}"><figcaption>{caption}</figcaption>'
                "</figure>"
            )
        return "images", (
            f"<figcaption>{escape(title)}</figcaption><div class='thumbs'>{''.join(items)}</div>"
        )
    raise ValueError(f"artifact kind={kind!r}: expected series, bars, table or images")


def _suite_section(
    suite: str,
    checks: list[dict[str, Any]],
    artifacts: list[dict[str, Any]],
    ids: dict[int, str],
    lazy: bool,
) -> str:
    """One suite's section; ``lazy`` ones (all but the first) are laid out and painted only
    when scrolled near, which keeps thousands of checks from delaying the first paint."""
    figs = []
    for key, svg in _check_figures(checks, suite):
        figs.append(f'<figure class="fig plotfig" data-key="{escape(key)}">{svg}</figure>')
    for i, a in enumerate(artifacts):
        key = f"{suite}-{a['eval_set']}-{a['name']}-{i}"
        kind, inner = _artifact(a, key)
        figs.append(f'<figure class="fig {kind}fig" data-key="{escape(key)}">{inner}</figure>')
    matrices, rows = _split_matrix(checks)
    ordered = sorted(
        matrices, key=lambda b: (-sum(c["outcome"] == "fail" for _, c in matrices[b]), b)
    )
    parts = [
        f'<section class="suite{" later" if lazy else ""}" id="suite-{escape(suite)}">'
        f"<h2>{escape(suite)}{_counts_html(_counts(checks)) if checks else ''}</h2>"
    ]
    if figs:
        parts.append(f'<div class="figs">{"".join(figs)}</div>')
    if rows:
        parts.append(_checks_table(rows, ids))
    parts.extend(_matrix(b, matrices[b], ids) for b in ordered)
    parts.append("</section>")
    return "".join(parts)


def render(document: dict[str, Any], duration_s: float | None = None) -> str:
    """The HTML page for ``document``; ``duration_s`` is shown but not stored in the JSON."""
    checks = document["checks"]
    ids = {id(c): f"c{i}" for i, c in enumerate(checks)}
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in checks:
        by_suite[c["suite"]].append(c)
    arts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in document.get("artifacts", ()):
        arts[a["suite"]].append(a)
    suites = sorted(set(by_suite) | set(arts), key=_suite_rank)
    toc = " ".join(
        f'<a href="#suite-{escape(s)}">{escape(s)}</a>'
        f"{_counts_html(_counts(by_suite[s])) if by_suite[s] else ''}"
        for s in suites
    )
    sections = [_suite_section(s, by_suite[s], arts[s], ids, i > 0) for i, s in enumerate(suites)]
    skipped = _problem_list(document["problems"], ("skipped",))
    if skipped:
        sections.append(f'<section id="skipped"><h2>Skipped tests</h2>{skipped}</section>')
    verdict = document["verdict"]
    name = escape(str(document["model"].get("name")))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>vcheck {verdict}: {name}</title><style>{_CSS}</style></head><body><main>"
        + _first_screen(document, ids, duration_s)
        + _provenance(document, duration_s)
        + (f'<nav class="toc"><b>Suites:</b> {toc}</nav>' if suites else "")
        + "".join(sections)
        + "</main></body></html>\n"
    )
