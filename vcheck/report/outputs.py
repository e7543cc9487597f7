"""Where a run's report and metrics JSON go: checked before the tests, always written after.

:func:`check_output_paths` refuses, before any test runs, output paths that could only fail
at the end (a directory where a file must go, an unwritable folder, the report and the JSON
being one file), so a long run never loses its results. :func:`json_safe` turns whatever a
crashed run still holds into valid JSON, so even a run that failed while building its
document writes metrics JSON and report with the verdict ERROR, and the previous run's
report never stays in place.

Public names: :func:`check_output_paths`, :func:`json_safe`, :func:`error_page`.
"""

from __future__ import annotations

import math
import tempfile
from html import escape
from pathlib import Path
from typing import Any

from vcheck.errors import InvalidArgument


def _writable_folder(path: Path, option: str) -> None:
    """The nearest existing folder of ``path`` must be a folder we can create files in."""
    for parent in path.parents:
        if parent.exists():
            break
    else:  # pragma: no cover - the root always exists
        return
    if not parent.is_dir():
        raise InvalidArgument(
            f"{option}={path}: {parent} is a file, so the folder cannot be created; "
            f"pass {option} with a path in a folder"
        )
    try:  # os.access says yes to root everywhere; only trying tells (read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=parent, prefix=".vcheck-probe-"):
            pass
    except OSError as exc:
        raise InvalidArgument(
            f"{option}={path}: cannot write in {parent} ({exc.strerror or exc}); pass "
            f"{option} with a path in a writable folder"
        ) from None


def check_output_paths(report: Path, metrics_json: Path) -> None:
    """Refuse output paths that would lose the run's results (usage error with the fix)."""
    report, metrics_json = Path(report), Path(metrics_json)
    if report.is_dir():
        raise InvalidArgument(
            f"--report={report}: is a directory; pass a file path such as "
            f"--report={report / 'report.html'}"
        )
    if metrics_json.is_dir():
        raise InvalidArgument(
            f"--metrics-json={metrics_json}: is a directory; pass a file path such as "
            f"--metrics-json={metrics_json / 'metrics.json'}"
        )
    if report.resolve() == metrics_json.resolve():
        raise InvalidArgument(
            f"--report and --metrics-json are the same file ({report}); the HTML would "
            "overwrite the JSON. Pass two different paths"
        )
    _writable_folder(report.resolve(), "--report")
    _writable_folder(metrics_json.resolve(), "--metrics-json")


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as None and anything else JSON cannot hold as text."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    try:  # numpy scalars and the like
        return json_safe(obj.item())
    except (AttributeError, ValueError, TypeError):
        return str(obj)


def error_page(document: dict[str, Any], detail: str) -> str:
    """A minimal report for a run whose full report could not be rendered."""
    error = document.get("error") or {"stage": "rendering the report", "reason": detail}
    name = escape(str((document.get("model") or {}).get("name")))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>vcheck ERROR: {name}</title></head><body>"
        '<p><span id="verdict" style="display:inline-block;padding:.4rem 1rem;'
        'background:#9a6700;color:#fff;font:700 2rem sans-serif">ERROR</span></p>'
        f"<p><b>{escape(error['stage'])}</b>: {escape(error['reason'])}</p>"
        f"<p>Model {name}; the metrics JSON beside this report holds what was measured.</p>"
        "</body></html>\n"
    )
