"""Generate the shipped soundness benchmark: ``python -m vcheck.soundness.make_benchmark``.

Writes one VNN-COMP folder per network of the grid under ``--out`` (default
fixtures/soundness), instances in a seeded random order so that no verifier can tell a
counterexample instance from a clean one by its position. ``--generator shipped`` (default)
writes what fixtures/ ships: the constructive needle grid, which runs in minutes on a CPU,
and the hand-built edge-case network (vcheck.soundness.edge_cases). ``--generator trained``
is SoundnessBench's training recipe, meant for ``--device cuda`` (GPU-hours at full scale).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import torch

from vcheck.models.zoo import fixtures_dir
from vcheck.soundness import edge_cases, needle, trained
from vcheck.soundness.vnncomp import write_benchmark

_CNN1 = dict(input_shape=(1, 5, 5), convs=(8,), hidden=(64, 32))
_CNN2 = dict(input_shape=(3, 5, 5), convs=(8, 8), hidden=(64, 32))

# Graded depths: x* on a vertex of a box where the host is (nearly) affine, misclassified by
# 1e-4, 1e-3 and 1e-2, so CROWN's bound is about x*'s own margin and a verifier with
# numerical slack >= the depth is caught. The MLP takes 25 inputs, not 10: a vertex of a
# 10-dimensional box is found by random vertex sampling (1,024 corners).
_GRADED = dict(
    counterexamples=3,
    clean=3,
    spare=6,
    depths=(1e-4, 1e-3, 1e-2),
    inset=1.0,
    flat_top=0.0,
    delta=1.0,
    train_eps_factor=3.0,
    min_center_distance=6.5,
    stability=10.0,
    stable_boxes=True,
)
# Per architecture, over _GRADED. The 2-conv host trains its interval bounds at 2 eps: at 3 eps
# with the stability penalty no host was certified on every box in 8 attempts.
_GRADED_ARCHS = {
    "mlp_25in_64x32": dict(input_shape=(25,), hidden=(64, 32)),
    "cnn_1conv_1x5x5": {**_CNN1, "zero_gap": 0.5},
    "cnn_2conv_3x5x5": {**_CNN2, "zero_gap": 0.5, "train_eps_factor": 2.0},
}

GRID: tuple[needle.NeedleSettings, ...] = (
    needle.NeedleSettings(name="mlp_4x64_eps0.02"),
    needle.NeedleSettings(name="cnn_1conv_1x5x5_eps0.02", **_CNN1),
    needle.NeedleSettings(name="cnn_2conv_3x5x5_eps0.02", **_CNN2),
    needle.NeedleSettings(name="cnn_avgpool_1x5x5_eps0.02", **{**_CNN1, "convs": (32,)}, pool=2),
    needle.NeedleSettings(
        name="cnn_sigmoid_1x5x5_eps0.02", **_CNN1, activation="sigmoid", host_training="pgd"
    ),
    needle.NeedleSettings(
        name="cnn_tanh_1x5x5_eps0.02", **_CNN1, activation="tanh", host_training="pgd"
    ),
    needle.NeedleSettings(name="cnn_1conv_1x5x5_eps0.05", **_CNN1, eps=0.05),
    *(
        needle.NeedleSettings(name=f"graded_{name}_eps0.02", **{**_GRADED, **arch})
        for name, arch in _GRADED_ARCHS.items()
    ),
)

# SoundnessBench's grid at reduced width, for a lent GPU; nothing from it is shipped yet.
TRAINED_GRID: tuple[trained.TrainedSettings, ...] = (
    trained.TrainedSettings(name="trained_mlp_4x200_eps0.02"),
    trained.TrainedSettings(
        name="trained_cnn_1conv_1x5x5_eps0.02", input_shape=(1, 5, 5), convs=(8,), hidden=(200,)
    ),
    trained.TrainedSettings(name="trained_mlp_4x200_eps0.05", eps=0.05, min_center_distance=2.2),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=fixtures_dir() / "soundness")
    parser.add_argument("--generator", choices=("shipped", "trained"), default="shipped")
    parser.add_argument("--only", nargs="*", default=None, help="names from the grid")
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    parser.add_argument("--timeout", type=float, default=60.0, help="per instance, in the CSV")
    parser.add_argument("--device", default="cpu", help="trained generator only, e.g. cuda")
    parser.add_argument("--epochs", type=int, default=None, help="trained generator only")
    args = parser.parse_args(argv)
    grid: tuple = (*GRID, edge_cases.NAME) if args.generator == "shipped" else TRAINED_GRID
    names = [s if isinstance(s, str) else s.name for s in grid]
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"not in the {args.generator} grid: {', '.join(unknown)} (see --list)")
    if args.generator == "shipped" and (args.device != "cpu" or args.epochs is not None):
        parser.error("--device and --epochs apply to --generator trained only")
    torch.set_num_threads(1)  # tiny networks: one thread is much faster on a busy machine
    for settings, name in zip(grid, names, strict=True):
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        if name == edge_cases.NAME:
            network = edge_cases.build()
        elif isinstance(settings, trained.TrainedSettings):
            changes = {"device": args.device}
            if args.epochs is not None:
                changes["epochs"] = args.epochs
            settings = dataclasses.replace(settings, **changes)
            network = trained.generate(settings, log=lambda line: print(line, flush=True))
        else:
            network = needle.generate(settings)
        random.Random(getattr(settings, "seed", 0)).shuffle(network.instances)
        network.seconds = time.perf_counter() - start
        write_benchmark(network, args.out / name, timeout=args.timeout)
        kinds = [i.kind for i in network.instances]
        print(
            f"{name}: {kinds.count('counterexample')} hidden counterexamples, "
            f"{kinds.count('clean')} clean, {network.seconds:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
