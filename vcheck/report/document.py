"""The metrics.json document: everything a run measured, in a versioned, validated shape.

The document is deterministic: no timestamps or durations (those go to the HTML only), so two
runs with the same seed write identical bytes, and a run split over processes (pytest-xdist)
or machines (:mod:`vcheck.report.merge`) writes the same document as a serial run.
The schema is :data:`vcheck.report.schema.SCHEMA` (fields documented there).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vcheck.checks import CheckResult

SCHEMA_ID = "vcheck.metrics"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # what --baseline accepts
TEST_OUTCOMES = ("passed", "failed", "error", "skipped")


def pack_bits(correct: np.ndarray) -> str:
    """Per-sample correctness as base64 of ``np.packbits`` (10,000 samples -> 1.7 kB)."""
    return base64.b64encode(np.packbits(correct.astype(bool)).tobytes()).decode()


def unpack_bits(data: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))[:n].astype(bool)


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def versions() -> dict[str, str]:
    import torch

    import vcheck

    return {
        "vcheck": vcheck.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _torchvision_version(),
    }


def _torchvision_version() -> str:
    """torchvision's ``__version__`` (with its build tag, e.g. +cu130) read from its
    version.py: importing torchvision imports torch._dynamo, seconds a warm run need not pay."""
    import importlib.metadata
    import importlib.util
    import re

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "not installed"
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        text = ""
    found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    return found.group(1) if found else importlib.metadata.version("torchvision")


def _as_json(check: CheckResult | dict[str, Any]) -> dict[str, Any]:
    return check.to_json() if isinstance(check, CheckResult) else check


def verdict(
    checks: list[CheckResult] | list[dict[str, Any]],
    tests: dict[str, int],
    error: dict[str, str] | None = None,
) -> str:
    """ERROR if the run did not complete (``error``); else PASS only if some test ran, no
    check failed and no test failed or errored."""
    if error:
        return "ERROR"
    ran = sum(tests.get(k, 0) for k in ("passed", "failed", "error"))
    if ran == 0 or tests.get("failed", 0) or tests.get("error", 0):
        return "FAIL"
    return "FAIL" if any(_as_json(c)["outcome"] == "fail" for c in checks) else "PASS"


def error_info(stage: str, exc: BaseException | str) -> dict[str, str]:
    """The ``error`` entry of a run that did not complete: where, and the one-line reason."""
    if isinstance(exc, BaseException):
        text = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    else:
        reason = exc
    return {"stage": stage, "reason": reason[:500]}


def check_key(check: dict[str, Any]) -> tuple[str, str, str, str, str]:
    """What identifies a check across runs: suite, metric, eval set, slice and test."""
    return (check["suite"], check["metric"], check["eval_set"], check["slice"] or "",
            check["nodeid"])  # fmt: skip


def build_document(
    *,
    model: dict[str, Any],
    eval_sets: list[dict[str, Any]],
    settings: dict[str, Any],
    profile: dict[str, Any],
    checks: list[CheckResult] | list[dict[str, Any]],
    test_outcomes: dict[str, str],
    artifacts: list[dict[str, Any]] | None = None,
    problems: list[dict[str, str]],
    per_sample: dict[str, dict[str, Any]],
    error: dict[str, str] | None = None,
    baseline: dict[str, Any] | None = None,
    versions_: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The document of one run. ``test_outcomes`` maps each test's node id to passed, failed,
    error or skipped; ``error`` (see :func:`error_info`) makes the verdict ERROR."""
    as_json = [_as_json(c) for c in checks]
    ordered = sorted(as_json, key=lambda c: (c["suite"], c["eval_set"], c["slice"] or "",
                                             c["metric"], c["nodeid"]))  # fmt: skip
    counts = {k: sum(c["outcome"] == k for c in as_json) for k in ("pass", "fail", "info")}
    tests = {k: sum(v == k for v in test_outcomes.values()) for k in TEST_OUTCOMES}
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict(as_json, tests, error),
        "error": error,
        "model": model,
        "eval_sets": sorted(eval_sets, key=lambda e: e["name"]),
        "settings": settings,
        "profile": profile,
        "versions": versions_ if versions_ is not None else versions(),
        "baseline": baseline,
        "summary": {"checks": counts, "tests": tests},
        "test_outcomes": dict(sorted(test_outcomes.items())),
        "checks": ordered,
        "artifacts": sorted(
            artifacts or [], key=lambda a: (a["suite"], a["eval_set"], a["name"], a["nodeid"])
        ),
        "problems": sorted(problems, key=lambda p: p["nodeid"]),
        "per_sample": per_sample,
    }


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
