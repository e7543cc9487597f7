"""Generate the shipped soundness benchmark: ``python -m vcheck.soundness.make_benchmark``.

Writes one VNN-COMP folder per network of the grid under ``--out`` (default
fixtures/soundness), instances in a seeded random order so that no verifier can tell a
counterexample instance from a clean one by its position.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

from vcheck.models.zoo import fixtures_dir
from vcheck.soundness.needle import NeedleSettings, generate
from vcheck.soundness.vnncomp import write_benchmark

GRID = (
    NeedleSettings(name="mlp_4x64_eps0.02"),
    NeedleSettings(
        name="cnn_1conv_1x5x5_eps0.02", input_shape=(1, 5, 5), convs=(8,), hidden=(64, 32)
    ),
    NeedleSettings(
        name="cnn_2conv_3x5x5_eps0.02", input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32)
    ),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=fixtures_dir() / "soundness")
    parser.add_argument("--only", nargs="*", default=None, help="names from the grid")
    parser.add_argument("--timeout", type=float, default=60.0, help="per instance, in the CSV")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny networks: one thread is much faster on a busy machine
    for settings in GRID:
        if args.only and settings.name not in args.only:
            continue
        start = time.perf_counter()
        network = generate(settings)
        random.Random(settings.seed).shuffle(network.instances)
        network.seconds = time.perf_counter() - start
        write_benchmark(network, args.out / settings.name, timeout=args.timeout)
        kinds = [i.kind for i in network.instances]
        print(
            f"{settings.name}: {kinds.count('counterexample')} hidden counterexamples, "
            f"{kinds.count('clean')} clean, {network.seconds:.0f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
