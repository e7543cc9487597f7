"""The adversarial and corruption suites' cost, measured side by side in one run.

1. vcheck's PGD evaluation (only clean-correct samples, only what is still standing per
   epsilon) against the plain foolbox call on every sample, same model, samples, epsilons
   and per-sample seeds: seconds of each, their ratio (target <= 1.0) and both robust
   accuracies, which must agree;
2. what the two suites add to a cold default run: ``pytest suites/test_accuracy.py`` cold,
   then with ``suites/test_adversarial.py suites/test_corruptions.py`` cold, then warm (the
   cache of the second run), each in a fresh interpreter with its own cache directory.

Wall-clock and CPU seconds (user + system) are printed with the load average, since timings
on shared cores are noisy; on an idle 2-core machine wall time is about CPU time / 2.

    .venv/bin/python benchmarks/bench_adversarial.py [--samples 200] [--skip-suites]
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
SUITES = ["suites/test_adversarial.py", "suites/test_corruptions.py"]


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_pgd(samples: int) -> None:
    import numpy as np
    import torch

    from vcheck.config import DEFAULT_MODEL
    from vcheck.data.fashion_mnist import load_fashion_mnist
    from vcheck.evaluate.adversarial import select_samples
    from vcheck.models import resolve_model
    from vcheck.robustness.attacks import (
        AttackSpec,
        attack_success,
        foolbox_model,
        make_attack,
        restart_seeds,
    )

    model = resolve_model(DEFAULT_MODEL).load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, Path.home() / ".cache" / "vcheck" / "data")
    idx = np.asarray(select_samples(data.labels, samples, 0))
    x, y = data.images(idx.tolist()), data.labels[idx]
    with torch.no_grad():
        correct = (model.module(x).argmax(1) == y).numpy()
    eps = [0.01, 0.03, 0.1]
    spec = AttackSpec("pgd", "linf", steps=10, rel_stepsize=0.25, restarts=1)
    fmodel = foolbox_model(model.module)

    def ours():
        todo = np.tile(correct, (len(eps), 1))
        return attack_success(fmodel, spec, x, y, eps, seed=0, ids=idx, todo=todo) | ~correct

    def plain():
        attack = make_attack(spec)
        attack.seeds = restart_seeds(0, 0, idx)
        return attack(fmodel, x, y, epsilons=eps)[2].numpy()

    plain()  # warm-up: first calls pay for lazy initialisation
    a, wall_a, cpu_a = _timed(ours)
    b, wall_b, cpu_b = _timed(plain)
    acc_a, acc_b = 1 - a.mean(1), 1 - b.mean(1)
    print(f"PGD (L-inf, {spec.steps} steps) on {DEFAULT_MODEL}, {len(idx)} samples, eps {eps}")
    print(f"  vcheck:        {wall_a:6.2f} s wall {cpu_a:6.2f} s CPU  robust acc {acc_a.round(4)}")
    print(f"  plain foolbox: {wall_b:6.2f} s wall {cpu_b:6.2f} s CPU  robust acc {acc_b.round(4)}")
    print(f"  ratio vcheck / plain: {wall_a / wall_b:.2f} wall, {cpu_a / cpu_b:.2f} CPU")
    print(f"  accuracies agree: {bool(np.array_equal(acc_a, acc_b))}")


def _run(args: list[str], cache: Path, out: Path) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    report = f"--report={out / 'report.html'}"
    flags = [f"--cache-dir={cache}", report, "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, *flags],
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
    return wall, cpu


def bench_suites() -> None:
    with tempfile.TemporaryDirectory(prefix="vcheck-bench-adv-") as tmp:
        t = Path(tmp)
        base = _run(["suites/test_accuracy.py"], t / "c1", t / "o1")
        cold = _run(["suites/test_accuracy.py", *SUITES], t / "c2", t / "o2")
        warm = _run(["suites/test_accuracy.py", *SUITES], t / "c2", t / "o3")
        base_warm = _run(["suites/test_accuracy.py"], t / "c2", t / "o4")
    print("default run (fmnist_cnn), seconds: wall / CPU")
    print(f"  accuracy suite alone, cold:          {base[0]:6.1f} / {base[1]:6.1f}")
    print(f"  accuracy suite alone, warm:          {base_warm[0]:6.1f} / {base_warm[1]:6.1f}")
    print(f"  + adversarial + corruptions, cold:   {cold[0]:6.1f} / {cold[1]:6.1f}")
    print(f"  + adversarial + corruptions, warm:   {warm[0]:6.1f} / {warm[1]:6.1f}")
    share = (cold[0] - base[0], cold[1] - base[1])
    print(f"  the two suites' share, cold:         {share[0]:6.1f} / {share[1]:6.1f}")
    share = (warm[0] - base_warm[0], warm[1] - base_warm[1])
    print(f"  the two suites' share, warm:         {share[0]:6.1f} / {share[1]:6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--skip-suites", action="store_true")
    args = parser.parse_args(argv)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    bench_pgd(args.samples)
    if not args.skip_suites:
        bench_suites()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
