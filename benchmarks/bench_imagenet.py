"""vcheck's prediction pass against a bare torchvision eval loop, side by side, in one run.

Prints images/s and their ratio (target >= 0.95) for:
1. real images: a folder of JPEGs in ImageNet's wnid layout (written here, ImageNet-sized),
   vcheck's pass (`load_imagenet` + `get_predictions`, no cache) against a bare
   `ImageFolder` + `weights.transforms()` + `DataLoader` loop on the same files, model
   (random weights), batch size and number of decoding workers;
2. in memory: Fashion-MNIST test (10,000 images) through fmnist_cnn, vcheck's pass against a
   bare `torch.inference_mode()` loop over the uint8 tensor.
Repetitions are interleaved (machine-load drift hits both alike); medians are compared.

Usage: .venv/bin/python benchmarks/bench_imagenet.py [--arch resnet18] [--images 384]
       [--reps 3] [--batch-size 64] [--skip-fmnist] [--skip-real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_folder(root: Path, n: int) -> None:
    """``n`` JPEGs of 500x375 (ImageNet's typical size), smooth with noise, in 4 wnid folders."""
    from vcheck.data.imagenet import imagenet_wnids

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for k in range(n):
        folder = root / imagenet_wnids()[k % 4]
        folder.mkdir(parents=True, exist_ok=True)
        base = np.stack([(xx * (k + 1) + yy * c) % 256 for c in (1, 2, 3)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"ILSVRC2012_val_{k + 1:08d}.JPEG", quality=90)


def timed(fns: dict[str, Callable[[], int]], reps: int) -> dict[str, float]:
    """Median images/s of each function, repetitions interleaved."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    counts = {name: fn() for name, fn in fns.items()}  # warm-up (and page cache)
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: counts[name] / statistics.median(t) for name, t in times.items()}


def real_images(arch: str, n: int, reps: int, batch_size: int) -> tuple[float, float, int]:
    from vcheck.data.evalset import default_workers
    from vcheck.data.imagenet import load_imagenet
    from vcheck.models import torchvision_models as tvm
    from vcheck.models.base import finalize
    from vcheck.predictions import get_predictions

    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None).eval()
    cfg = tvm.cfg_for(arch)
    model = finalize(arch, net, cfg, "random", torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "val"
        write_folder(root, n)
        workers = default_workers(n, batch_size)
        eval_set, _ = load_imagenet("imagenet_val", root, cfg)
        transform = tvm.default_weights(arch).transforms()
        folder = torchvision.datasets.ImageFolder(str(root), transform=transform)

        @torch.inference_mode()
        def bare() -> int:
            loader = torch.utils.data.DataLoader(folder, batch_size=batch_size, num_workers=workers)
            return sum(len(net(x)) for x, _ in loader)

        def ours() -> int:
            return len(get_predictions(model, eval_set, None, batch_size, workers))

        rates = timed({"vcheck": ours, "bare": bare}, reps)
    return rates["vcheck"], rates["bare"], workers


def in_memory(reps: int, batch_size: int) -> tuple[float, float]:
    from vcheck.data.fashion_mnist import load_fashion_mnist
    from vcheck.models import resolve_model
    from vcheck.predictions import get_predictions

    model = resolve_model("fmnist_cnn").load(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        data = load_fashion_mnist("test", None, Path(tmp))
    x = data.pixels

    @torch.inference_mode()
    def bare() -> int:
        starts = range(0, len(x), batch_size)
        return len(torch.cat([model.module(x[i : i + batch_size].float() / 255) for i in starts]))

    def ours() -> int:
        return len(get_predictions(model, data, None, batch_size))

    rates = timed({"vcheck": ours, "bare": bare}, reps)
    return rates["vcheck"], rates["bare"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip-fmnist", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    if not args.skip_real:
        ours, bare, workers = real_images(args.arch, args.images, args.reps, args.batch_size)
        print(
            f"real images ({args.images} JPEGs 500x375, {args.arch}, batch {args.batch_size}, "
            f"{workers} decoding workers): vcheck {ours:,.1f} images/s, bare torchvision loop "
            f"{bare:,.1f} images/s, ratio {ours / bare:.3f} (target >= 0.95)"
        )
    if not args.skip_fmnist:
        ours, bare = in_memory(args.reps * 2, 256)
        print(
            f"in memory (Fashion-MNIST test, 10,000 images, fmnist_cnn, batch 256): vcheck "
            f"{ours:,.0f} images/s, bare loop {bare:,.0f} images/s, ratio {ours / bare:.3f} "
            "(target >= 0.95)"
        )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
