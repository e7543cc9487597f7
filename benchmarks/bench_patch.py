"""What the patch suite adds to a default run, measured side by side in one run.

Runs, each in a fresh interpreter with its own fresh cache directory:

1. ``pytest suites/test_accuracy.py`` (cold): the shared model load and prediction pass;
2. ``pytest suites/test_accuracy.py suites/test_patch.py`` (cold);
3. the same again on the cache of run 2 (warm: every patch case read back);

and prints wall-clock and CPU seconds (user + system of the child) of each, the patch
suite's share (2 minus 1), and the load average, since timings on shared cores are noisy.

    .venv/bin/python benchmarks/bench_patch.py [--model fmnist_cnn]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cache: Path, out: Path) -> tuple[float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *args,
            f"--cache-dir={cache}",
            f"--report={out / 'report.html'}",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 1):
        sys.exit(f"pytest {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
    return wall, cpu, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fmnist_cnn")
    args = parser.parse_args(argv)
    model = [f"--model={args.model}"]
    accuracy = ["suites/test_accuracy.py", *model]
    both = ["suites/test_accuracy.py", "suites/test_patch.py", *model]
    print(f"load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-patch-") as tmp:
        root = Path(tmp)
        base = _run(accuracy, root / "cache-a", root)
        cold = _run(both, root / "cache-b", root)
        warm = _run(both, root / "cache-b", root)
    rows = [
        ("accuracy suite alone, cold", base),
        ("accuracy + patch suites, cold", cold),
        ("accuracy + patch suites, warm (patch cases from the cache)", warm),
    ]
    for label, (wall, cpu, code) in rows:
        print(f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU (exit {code})")
    print(
        f"patch suite's share of a cold run: {cold[0] - base[0]:.1f} s wall, "
        f"{cold[1] - base[1]:.1f} s CPU"
    )
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
