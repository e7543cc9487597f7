"""Measure vcheck's inference path against a bare torch loop, side by side, in one run.

Prints:
1. forward passes per image over the default model's accuracy suite (fmnist_cnn, cold
   cache), split into the prediction pass and the sanity probes, and the same for a warm run;
2. prediction throughput of vcheck (`get_predictions`, no cache) over a bare
   `torch.inference_mode()` loop on the same model, data and batch size (interleaved
   repetitions, medians);
3. wall-clock seconds of the full default run (`pytest suites/`: accuracy and verifier
   soundness), cold and warm cache, in subprocesses.

Usage: .venv/bin/python benchmarks/bench_predictions.py [--reps 5] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


class ForwardCounter:
    """pytest plugin: counts images entering the model under test."""

    def __init__(self) -> None:
        self.images = 0
        self.eval_images = 0

    def pytest_vcheck_model_loaded(self, model) -> None:
        def count(_module, inputs):
            self.images += inputs[0].shape[0]

        model.module.register_forward_pre_hook(count)

    def pytest_sessionfinish(self, session) -> None:
        from vcheck.plugin import STASH

        vs = session.config.stash[STASH]
        self.eval_images = sum(len(e) for e in vs.eval_sets.values())


def passes_per_image(cache_dir: Path, out: Path) -> tuple[float, int, int]:
    counter = ForwardCounter()
    args = [
        str(REPO / "suites" / "test_accuracy.py"),
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--cache-dir={cache_dir}",
        f"--report={out / 'r.html'}",
        f"--metrics-json={out / 'm.json'}",
    ]
    code = pytest.main(args, plugins=[counter])
    if code != 0:
        raise SystemExit(f"the default run failed (exit {code}); fix that before benchmarking")
    return counter.images / counter.eval_images, counter.images, counter.eval_images


def throughput(reps: int, batch_size: int, cache_root: Path) -> tuple[float, float]:
    from vcheck.data.fashion_mnist import load_fashion_mnist
    from vcheck.models import resolve_model
    from vcheck.predictions import get_predictions

    model = resolve_model("fmnist_cnn").load(torch.device("cpu"))
    data = load_fashion_mnist("test", None, cache_root)

    @torch.inference_mode()
    def bare() -> torch.Tensor:
        x = data.pixels
        return torch.cat(
            [
                model.module(x[i : i + batch_size].float() / 255)
                for i in range(0, len(x), batch_size)
            ]
        )

    def vcheck_pass() -> torch.Tensor:
        return get_predictions(model, data, cache=None, batch_size=batch_size).logits

    assert torch.allclose(bare(), vcheck_pass())  # same work, same answer (also a warm-up)
    t_bare, t_vcheck = [], []
    for _ in range(reps):  # interleaved, so drifts in machine load hit both alike
        for fn, sink in ((bare, t_bare), (vcheck_pass, t_vcheck)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    n = len(data)
    return n / statistics.median(t_vcheck), n / statistics.median(t_bare)


def wall_clock(cache_dir: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "suites"),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--cache-dir={cache_dir}",
            f"--report={out / 'w.html'}",
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold_cache, wall_cache = tmp / "cache-a", tmp / "cache-b"
        cold, images, n = passes_per_image(cold_cache, tmp)
        warm, warm_images, _ = passes_per_image(cold_cache, tmp)
        probe = images - n
        print(
            f"forward passes per image, cold run: {cold:.4f} ({images} images for {n} eval "
            f"images: 1.0000 prediction pass + {probe / n:.4f} sanity probes)"
        )
        print(f"forward passes per image, warm run: {warm:.4f} ({warm_images} images: probes only)")
        ours, bare = throughput(args.reps, args.batch_size, cold_cache / "data")
        print(
            f"prediction throughput, batch {args.batch_size}: vcheck {ours:,.0f} images/s, "
            f"bare torch loop {bare:,.0f} images/s, ratio {ours / bare:.3f}"
        )
        t_cold = wall_clock(wall_cache, tmp)
        t_warm = wall_clock(wall_cache, tmp)
        print(
            f"full default run (pytest suites/: accuracy on 10,000 images + soundness): cold cache "
            f"{t_cold:.1f} s, warm cache {t_warm:.1f} s, warm/cold {t_warm / t_cold:.2f}"
        )
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
