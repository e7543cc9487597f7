"""Measure vcheck's inference path against a bare torch loop, side by side, in one run.

Prints:
1. forward passes per image over the default model's accuracy suite (fmnist_cnn, cold
   cache), split into the prediction pass and the sanity probes, and the same for a warm run;
2. prediction throughput of vcheck (`get_predictions`, no cache) over a bare
   `torch.inference_mode()` loop on the same model, data and batch size (target >= 0.95):
   repetitions interleaved, the ratio of the best times (load on shared cores only ever adds
   time, so the fastest repetition is the least disturbed one) and of the medians;

The default run's cold and warm wall clock, per suite, is ``benchmarks/bench_default_run.py``.

Usage: .venv/bin/python benchmarks/bench_predictions.py [--reps 7] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import statistics
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


def throughput(reps: int, batch_size: int, cache_root: Path) -> dict[str, tuple[float, float]]:
    """Images/s of vcheck's pass and of the bare loop, by statistic ("best", "median")."""
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
    return {
        name: (n / stat(t_vcheck), n / stat(t_bare))
        for name, stat in (("best", min), ("median", statistics.median))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cold_cache = tmp / "cache-a"
        cold, images, n = passes_per_image(cold_cache, tmp)
        warm, warm_images, _ = passes_per_image(cold_cache, tmp)
        probe = images - n
        print(
            f"forward passes per image, cold run: {cold:.4f} ({images} images for {n} eval "
            f"images: 1.0000 prediction pass + {probe / n:.4f} sanity probes)"
        )
        print(f"forward passes per image, warm run: {warm:.4f} ({warm_images} images)")
        rates = throughput(args.reps, args.batch_size, cold_cache / "data")
        (ours, bare), (ours_med, bare_med) = rates["best"], rates["median"]
        print(
            f"prediction throughput, Fashion-MNIST test in memory, batch {args.batch_size}, "
            f"best of {args.reps} interleaved: vcheck {ours:,.0f} images/s, bare torch loop "
            f"{bare:,.0f} images/s, ratio {ours / bare:.3f} (target >= 0.95; medians "
            f"{ours_med:,.0f} vs {bare_med:,.0f}, ratio {ours_med / bare_med:.3f})"
        )
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
