"""What the fairness suite adds to a default run, measured side by side in one run.

Prints:
1. ``pytest suites/test_accuracy.py suites/test_fairness.py`` on the default model with a
   fresh (cold) cache, then again warm: the wall clock of each run, and the seconds spent in
   each suite's tests (setup + call + teardown, summed from the JUnit XML). The accuracy tests
   run first and pay for the one forward pass, so the fairness tests' sum is exactly what the
   suite adds to a cold default run (slices measured and cached, every attribute evaluated,
   checks and artifacts recorded); medians over ``--reps``;
2. in-process, the fairness work alone on the 10,000 test images: measuring the image
   slices (cold), reading them back (warm), and evaluating each attribute (group accuracy,
   gaps, the five fairness metrics and their stratified bootstrap).

The load average is printed before and after: on shared cores, every figure grows with it.

Usage: .venv/bin/python benchmarks/bench_fairness.py [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ACCURACY = REPO / "suites" / "test_accuracy.py"
FAIRNESS = REPO / "suites" / "test_fairness.py"


def timed_run(cache: Path, out: Path) -> tuple[float, dict[str, float]]:
    """Wall clock of one run of both suites, and the seconds spent in each suite's tests."""
    args = [sys.executable, "-m", "pytest", str(ACCURACY), str(FAIRNESS), "-q"]
    args += ["-p", "no:cacheprovider", f"--cache-dir={cache}", f"--junitxml={out}.xml"]
    args += [f"--report={out}.html", f"--metrics-json={out}.json"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "VCHECK_CACHE_DIR")}
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    per_suite: dict[str, float] = {}
    for case in ET.parse(f"{out}.xml").iter("testcase"):
        suite = case.get("classname", "").rsplit(".", 1)[-1]
        per_suite[suite] = per_suite.get(suite, 0.0) + float(case.get("time", 0))
    return seconds, per_suite


def in_process(tmp: Path) -> None:
    import torch

    from vcheck.cache import ResultCache
    from vcheck.config import VcheckConfig
    from vcheck.data.sources import load_eval_set
    from vcheck.evaluate.fairness import evaluate_attribute
    from vcheck.evaluate.slices import default_slices, slice_groups, slice_statistics
    from vcheck.functional.classification import topk_correct
    from vcheck.models import resolve_model
    from vcheck.predictions import get_predictions
    from vcheck.profiles import load_profile

    ref = resolve_model("fmnist_cnn")
    model = ref.load(torch.device("cpu"))
    eval_set = load_eval_set("fmnist_test", ref.cfg, VcheckConfig())
    preds = get_predictions(model, eval_set, ResultCache(tmp / "cache", "predictions"))
    profile = load_profile(ref.profile, ref.cfg.classes).table("fairness")
    cache = ResultCache(tmp / "cache", "slices")
    key = model.cfg.preprocessing_key()
    start = time.perf_counter()
    values, _ = slice_statistics(eval_set, cache, key)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    slice_statistics(eval_set, cache, key)
    warm = time.perf_counter() - start
    print(f"image slices of {len(eval_set)} images: measured {cold:.2f} s, from cache {warm:.3f} s")
    logits, labels = preds.logits.numpy(), preds.labels.numpy()
    top5 = topk_correct(logits, labels, 5)
    for name, bins in default_slices(ref.cfg.domain).items():
        groups, order = slice_groups(values[bins.measure], bins)
        start = time.perf_counter()
        evaluate_attribute(
            name, "bench", groups, order, labels, logits.argmax(1), num_classes=10,
            min_group_size=profile.min_group_size, min_class_samples=profile.min_class_samples,
            pairs=[p for p in profile.pairs if p.attribute == name], top5_correct=top5,
            resamples=200,
        )  # fmt: skip
        print(f"evaluate {name}: {time.perf_counter() - start:.2f} s (200 resamples)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-fairness-") as d:
        tmp = Path(d)
        runs: dict[str, list[tuple[float, dict[str, float]]]] = {"cold": [], "warm": []}
        for rep in range(args.reps):
            cache, out = tmp / f"cache-{rep}", tmp / f"out-{rep}"
            runs["cold"].append(timed_run(cache, out))
            runs["warm"].append(timed_run(cache, out))
        for state, results in runs.items():
            wall = statistics.median(r[0] for r in results)
            acc = statistics.median(r[1].get("test_accuracy", 0.0) for r in results)
            fair = statistics.median(r[1].get("test_fairness", 0.0) for r in results)
            each = [round(r[1].get("test_fairness", 0.0), 1) for r in results]
            print(
                f"{state}: run {wall:.1f} s; accuracy tests {acc:.1f} s; fairness tests "
                f"{fair:.1f} s (medians of {args.reps}; fairness each run: {each})"
            )
        in_process(tmp)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
