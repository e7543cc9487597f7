"""What the multi-label suite adds to a cold default run, measured side by side.

Runs, alternately and each with a fresh cache directory, ``pytest suites/test_accuracy.py``
and ``pytest suites/test_accuracy.py suites/test_multilabel.py`` on the default model, then
the multi-label suite alone on a warm cache. Prints the medians, the suite's cold share
(the difference) and the machine's load average, since timings on shared cores are noisy.

    .venv/bin/python benchmarks/bench_multilabel.py --reps 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCURACY = str(REPO / "suites" / "test_accuracy.py")
MULTILABEL = str(REPO / "suites" / "test_multilabel.py")


def timed(args: list[str], cache: Path, cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, f"--cache-dir={cache}", "-q", "-p",
         "no:cacheprovider"],
        cwd=cwd, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds


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
    b, m, w = (statistics.median(x) for x in (base, both, warm))
    print(f"cold accuracy suite alone:            {b:6.1f} s  (runs: {_fmt(base)})")
    print(f"cold accuracy + multi-label suites:   {m:6.1f} s  (runs: {_fmt(both)})")
    print(f"multi-label suite's cold share:       {m - b:6.1f} s  (budget 15 s)")
    print(f"multi-label suite alone, warm cache:  {w:6.1f} s  (runs: {_fmt(warm)})")
    load_after = os.getloadavg()
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    sys.exit(main())
