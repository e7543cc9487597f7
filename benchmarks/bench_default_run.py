"""The default run (`make run`, i.e. ``pytest suites/`` on fmnist_cnn), cold and warm, with
each suite's share, from one run of each.

Prints the wall clock of a run with a fresh (cold) cache and of the same command again (warm),
beside the issue's budgets (cold < 120 s, warm < 20 s on 2 cores), and per suite the seconds
spent in its tests (setup + call + teardown, summed from the JUnit XML) and their share of the
run (with worker processes, seconds summed over the workers, so shares can add up to more
than 100%). Suites that run first pay for shared work (the forward pass in the accuracy suite). The
load average is printed before and after: on shared cores every figure grows with it.

With ``--marginal FILE ...`` it also runs the cold run without those suite files and prints
the difference: what they add to a cold run. That differs from their own seconds since the
soundness suite's verifiers run in background processes meanwhile (vcheck/soundness/pool.py),
so the suites' time and the verifiers' overlap.

Usage: .venv/bin/python benchmarks/bench_default_run.py [--workers 0] [--suites suites/]
       [--marginal suites/test_adversarial.py suites/test_corruptions.py]
       [-- extra pytest args]      (--workers N: N pytest-xdist workers; 0, as make run, one
       process. Measured: 2 workers on 2 cores were no faster cold and slower warm, since torch
       already uses both cores outside the one-thread verifiers.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET = {"cold": 120.0, "warm": 20.0}


def timed_run(targets: list[str], workers: int, cache: Path, out: Path, extra: list[str]):
    """Wall clock of one run, the seconds per suite file, and the pytest exit code."""
    args = [sys.executable, "-m", "pytest", *targets, "-n", str(workers), "-q"]
    args += ["-p", "no:cacheprovider"]
    args += [f"--cache-dir={cache}", f"--junitxml={out}.xml"]
    args += [f"--report={out}.html", f"--metrics-json={out}.json", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR")}
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: a check failed, still a timed run
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    per_suite: dict[str, float] = {}
    for case in ET.parse(f"{out}.xml").iter("testcase"):
        suite = case.get("classname", "").rsplit(".", 1)[-1]
        per_suite[suite] = per_suite.get(suite, 0.0) + float(case.get("time", 0))
    return seconds, per_suite, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="*", default=["suites/"], help="pytest targets")
    parser.add_argument(
        "--workers", type=int, default=0, help="pytest-xdist workers (0: one process, as make run)"
    )
    parser.add_argument(
        "--marginal",
        nargs="*",
        default=[],
        metavar="FILE",
        help="suite files whose addition to a cold run to measure (one more cold run without)",
    )
    parser.add_argument("extra", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"pytest {' '.join(args.suites)} -n {args.workers} (cold: empty cache; warm: again)")
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-default-") as d:
        tmp = Path(d)
        runs = {}
        for state in ("cold", "warm"):
            runs[state] = timed_run(
                args.suites, args.workers, tmp / "cache", tmp / state, args.extra
            )
        if args.marginal:
            ignore = [f"--ignore={f}" for f in args.marginal]
            without = timed_run(
                args.suites,
                args.workers,
                tmp / "cache-without",
                tmp / "without",
                [*ignore, *args.extra],
            )
    suites = sorted({s for r in runs.values() for s in r[1]}, key=lambda s: -runs["cold"][1][s])
    print(f"{'':24} {'cold':>16} {'warm':>16}")
    cells = []
    for state in ("cold", "warm"):
        wall, _, code = runs[state]
        mark = "" if code == 0 else " (checks failed)"
        cells.append(f"{wall:7.1f} s / {BUDGET[state]:.0f} s{mark}")
    print(f"{'run (budget)':24} {cells[0]:>16} {cells[1]:>16}")
    for suite in suites:
        cells = []
        for state in ("cold", "warm"):
            wall, per_suite, _ = runs[state]
            t = per_suite.get(suite, 0.0)
            cells.append(f"{t:7.1f} s {100 * t / wall:4.0f}%")
        print(f"{suite:24} {cells[0]:>16} {cells[1]:>16}")
    if args.marginal:
        added = runs["cold"][0] - without[0]
        print(f"cold without {' '.join(args.marginal)}: {without[0]:.1f} s; they add {added:.1f} s")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
