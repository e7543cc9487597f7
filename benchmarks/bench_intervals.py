"""Interval coverage of the accuracy suite, and what the intervals cost a cold run.

1. Coverage table: for each metric and eval-set size n, the fraction of seeded synthetic eval
   sets (known true value; see tests/_coverage.py) whose interval holds the truth, against
   the nominal level.
2. Cold-run time: ``pytest suites/test_accuracy.py`` on the default model with a fresh cache,
   this checkout against ``--before REV`` (the tree before the intervals change, exported
   with ``git archive``), alternately, medians of wall-clock and CPU time (user + system of
   the pytest process) side by side. On shared cores wall-clock time grows with the load,
   CPU time much less.

    .venv/bin/python benchmarks/bench_intervals.py --draws 100 --reps 3
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
sys.path.insert(0, str(REPO))

from tests._coverage import SCENARIOS, coverage  # noqa: E402

# The accuracy evaluator's interval metrics on a synthetic 10,000 x 10 eval set, in a fresh
# interpreter of either tree with that tree's default resamples: CPU seconds, less noisy
# on shared cores than a whole run.
EVALUATOR_SCRIPT = """
import sys, time, torch
from vcheck.evaluate.accuracy import AccuracyEvaluator
from vcheck.predictions import Predictions
g = torch.Generator().manual_seed(0)
labels = torch.randint(0, 10, (10_000,), generator=g)
logits = torch.randn(10_000, 10, generator=g) * 2
logits[torch.arange(10_000), labels] += 3
p = Predictions(logits, labels, [str(i) for i in range(10_000)], "softmax", "k", 0.0, False)
ev = AccuracyEvaluator(p, tuple("abcdefghij"))
start = time.process_time()
for m in ("balanced_accuracy", "worst_class_recall", "auc_ovr_macro", "ece", "nll"):
    ev.measure(m)
print(time.process_time() - start)
"""
BEFORE = "57ed7d9"  # main just before the intervals change (200 percentile resamples)
SIZES = (50, 200, 1000, 10_000)


def coverage_table(draws: int, confidence: float) -> None:
    print(f"| metric | n | nominal | empirical ({draws} draws; 10,000: {max(draws // 4, 20)}) |")
    print("|---|---|---|---|")
    for name, scenario in SCENARIOS.items():
        for n in SIZES:
            d = draws if n < 10_000 else max(draws // 4, 20)
            start = time.perf_counter()
            value = coverage(name, n, d, confidence=confidence)
            mark = "" if scenario.promised else " (not promised: biased)"
            print(f"| {name}{mark} | {n} | {confidence:.2f} | {value:.3f} |", flush=True)
            print(f"    ({time.perf_counter() - start:.0f} s)", file=sys.stderr)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(tree: Path, cache: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one cold accuracy-suite run from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu, start = _cpu(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(tree / "suites" / "test_accuracy.py"), "-q", "-p",
         "no:cacheprovider", f"--cache-dir={cache}", f"--report={cache}/r.html",
         f"--metrics-json={cache}/m.json"],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{tree} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return seconds, _cpu() - cpu


def evaluator_cpu(tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", EVALUATOR_SCRIPT], cwd=tree, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    return float(proc.stdout.split()[-1])


def cold_runs(before: str, reps: int) -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-intervals-") as tmp:
        root = Path(tmp)
        old = root / "before"
        old.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", before], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for rep in range(reps):
            runs["before"].append(timed(old, root / f"b{rep}"))
            runs["after"].append(timed(REPO, root / f"a{rep}"))
        evaluator = {
            label: statistics.median(evaluator_cpu(tree) for _ in range(reps))
            for label, tree in (("before", old), ("after", REPO))
        }
    med = {k: [statistics.median(r[i] for r in v) for i in (0, 1)] for k, v in runs.items()}
    print(f"\ncold `pytest suites/test_accuracy.py`, median of {reps} (wall / CPU seconds):")
    print(f"before ({before}): {med['before'][0]:6.1f} / {med['before'][1]:6.1f}")
    print(f"after (this tree): {med['after'][0]:6.1f} / {med['after'][1]:6.1f}")
    print(
        f"after - before:    {med['after'][0] - med['before'][0]:+6.1f} / "
        f"{med['after'][1] - med['before'][1]:+6.1f}  (budget +5 s); runs: "
        + "; ".join(f"{k} " + ", ".join(f"{w:.1f}/{c:.1f}" for w, c in v) for k, v in runs.items())
    )
    print(
        f"accuracy evaluator's interval metrics, n = 10,000, CPU seconds (median of {reps}): "
        f"before {evaluator['before']:.2f}, after {evaluator['after']:.2f}"
    )
    print(f"load average (1 min) before/after: {load:.1f} / {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=100, help="synthetic eval sets per cell")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--reps", type=int, default=3, help="cold runs of each tree")
    parser.add_argument("--before", default=BEFORE, help="git revision to time against")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-coverage", action="store_true")
    args = parser.parse_args()
    if not args.skip_coverage:
        coverage_table(args.draws, args.confidence)
    if not args.skip_timing:
        cold_runs(args.before, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
