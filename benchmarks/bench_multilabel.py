"""What the multi-label suite adds to a cold default run, measured side by side.

Runs, alternately and each with a fresh cache directory, ``pytest suites/test_accuracy.py``
and ``pytest suites/test_accuracy.py suites/test_multilabel.py`` on the default model, then
the multi-label suite alone on a warm cache. Prints the medians of wall-clock and CPU time
(user + system of the pytest process), the suite's cold share (the difference) and the
machine's load average: on shared cores wall-clock time grows with the load, CPU time much
less, and on two idle cores a run's wall-clock time lies between its CPU time / 2 and its
CPU time.

    .venv/bin/python benchmarks/bench_multilabel.py --reps 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCURACY = str(REPO / "suites" / "test_accuracy.py")
MULTILABEL = str(REPO / "suites" / "test_multilabel.py")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], cache: Path, cwd: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one pytest run."""
    cpu = _cpu()
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, f"--cache-dir={cache}", "-q", "-p",
         "no:cacheprovider"],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, _cpu() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    base, both, warm = [], [], []
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-ml-") as tmp:
        root = Path(tmp)
        for rep in range(args.reps):
            base.append(timed([ACCURACY], root / f"a{rep}", root))
            both.append(timed([ACCURACY, MULTILABEL], root / f"b{rep}", root))
            warm.append(timed([MULTILABEL], root / f"b{rep}", root))
    for label, runs in (
        ("cold accuracy suite alone:          ", base),
        ("cold accuracy + multi-label suites: ", both),
        ("multi-label suite alone, warm cache:", warm),
    ):
        print(f"{label} {_median(runs, 0):6.1f} s wall, {_median(runs, 1):6.1f} s CPU  "
              f"(runs: {_fmt(runs)})")  # fmt: skip
    wall = _median(both, 0) - _median(base, 0)
    cpu = _median(both, 1) - _median(base, 1)
    print(
        f"multi-label suite's cold share:      {wall:6.1f} s wall, {cpu:6.1f} s CPU  (budget 15 s)"
    )
    load_after = os.getloadavg()
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


def _median(runs: list[tuple[float, float]], which: int) -> float:
    return statistics.median(r[which] for r in runs)


def _fmt(runs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{w:.1f}/{c:.1f}" for w, c in runs)


if __name__ == "__main__":
    sys.exit(main())
