"""vcheck's prediction pass against a bare torchvision eval loop, side by side, in one run.

Prints images/s and their ratio (target >= 0.95) on real images: a folder of JPEGs in
ImageNet's wnid layout (written here, ImageNet-sized), vcheck's pass (`load_imagenet` +
`get_predictions`, no cache) against a bare `ImageFolder` + `weights.transforms()` +
`DataLoader` loop on the same files, model (random weights), batch size and number of
decoding workers. The in-memory pass (Fashion-MNIST) is `benchmarks/bench_predictions.py`.
Repetitions are interleaved (machine-load drift hits both alike); the ratio of the best times
is the headline (load on shared cores only adds time), the medians' ratio is printed beside it.

Usage: .venv/bin/python benchmarks/bench_imagenet.py [--arch resnet18] [--images 384]
       [--reps 3] [--batch-size 64]
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


def timed(fns: dict[str, Callable[[], int]], reps: int) -> dict[str, dict[str, float]]:
    """Images/s of each function (best and median repetition), repetitions interleaved."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    counts = {name: fn() for name, fn in fns.items()}  # warm-up (and page cache)
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"best": counts[name] / min(t), "median": counts[name] / statistics.median(t)}
        for name, t in times.items()
    }


def real_images(arch: str, n: int, reps: int, batch_size: int) -> tuple[dict, dict, int]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    ours, bare, workers = real_images(args.arch, args.images, args.reps, args.batch_size)
    print(
        f"real images ({args.images} JPEGs 500x375, {args.arch}, batch {args.batch_size}, "
        f"{workers} decoding workers), best of {args.reps} interleaved: vcheck "
        f"{ours['best']:,.1f} images/s, bare torchvision loop {bare['best']:,.1f} images/s, "
        f"ratio {ours['best'] / bare['best']:.3f} (target >= 0.95; medians' ratio "
        f"{ours['median'] / bare['median']:.3f})"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
