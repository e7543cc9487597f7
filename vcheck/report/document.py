"""The metrics.json document: everything a run measured, in a versioned, validated shape.

The document is deterministic: no timestamps or durations (those go to the HTML only), so two
runs with the same seed write identical bytes.
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
SCHEMA_VERSION = 1
_OUTCOME_ORDER = {"fail": 0, "pass": 1, "info": 2}


def pack_bits(correct: np.ndarray) -> str:
    """Per-sample correctness as base64 of ``np.packbits`` (10,000 samples -> 1.7 kB)."""
    return base64.b64encode(np.packbits(correct.astype(bool)).tobytes()).decode()


def unpack_bits(data: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(data), dtype=np.uint8))[:n].astype(bool)


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def versions() -> dict[str, str]:
    import torch
    import torchvision

    import vcheck

    return {
        "vcheck": vcheck.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def verdict(checks: list[CheckResult], tests: dict[str, int]) -> str:
    """PASS only if some test ran, no check failed and no test failed or errored."""
    ran = sum(tests.get(k, 0) for k in ("passed", "failed", "error"))
    if ran == 0 or tests.get("failed", 0) or tests.get("error", 0):
        return "FAIL"
    return "FAIL" if any(c.outcome == "fail" for c in checks) else "PASS"


def build_document(
    *,
    model: dict[str, Any],
    eval_sets: list[dict[str, Any]],
    settings: dict[str, Any],
    profile: dict[str, Any],
    checks: list[CheckResult],
    tests: dict[str, int],
    artifacts: list[dict[str, Any]] | None = None,
    problems: list[dict[str, str]],
    per_sample: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    ordered = sorted(checks, key=lambda c: (c.suite, c.eval_set, c.slice or "", c.metric, c.nodeid))
    counts = {k: sum(c.outcome == k for c in checks) for k in ("pass", "fail", "info")}
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "verdict": verdict(checks, tests),
        "model": model,
        "eval_sets": eval_sets,
        "settings": settings,
        "profile": profile,
        "versions": versions(),
        "summary": {"checks": counts, "tests": tests},
        "checks": [c.to_json() for c in ordered],
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
