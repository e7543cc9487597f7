"""The README's detection-floor table: which synthetic verifier bugs each shipped network
catches, and the smallest numerical slack it catches.

For every network in fixtures/soundness (or --root): each mutant of
``vcheck.verify.mutants.MUTANTS`` (but the slack one) is run on the instances with a known
counterexample (planted, or a falsified clean one; "caught" when it answers "unsat" on one);
then, per bound method, the detection floor of ``NumericalSlack``: a slack s is caught exactly
when s exceeds -(margin lower bound) on such an instance, so the floor is the smallest such
bound's negation, checked by running ``NumericalSlack(1.05 * floor)`` (caught) and
``NumericalSlack(floor / 1.05)`` (not caught).

Usage: .venv/bin/python benchmarks/slack_floor.py [--root DIR] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vcheck.models.zoo import fixtures_dir
from vcheck.soundness.runner import load_benchmarks
from vcheck.verify.base import instance_box
from vcheck.verify.bounds import UnsupportedNetworkError
from vcheck.verify.mutants import MUTANTS, NumericalSlack

METHODS = ("IBP", "CROWN", "alpha-CROWN")


def slack_floor(network, cex, method: str) -> float | None:
    """The smallest slack that ``NumericalSlack`` with ``method`` is caught with (None if
    the method refuses the network)."""
    probe = NumericalSlack(1.0, method)
    worst = []
    for inst in cex:
        lower, upper = instance_box(inst)
        try:
            bounds = probe.margin_bounds(network.net, lower, upper, inst.label)
        except UnsupportedNetworkError:
            return None
        worst.append(max(0.0, -float(bounds.min())))
    floor = min(worst)
    for s, caught in ((floor * 1.05, True), (floor / 1.05, False)):
        if s > 0:
            verdicts = [NumericalSlack(s, method).verify(network, i).verdict for i in cex]
            assert ("unsat" in verdicts) == caught, (network.name, method, s, verdicts)
    return floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=fixtures_dir() / "soundness")
    parser.add_argument("--only", nargs="*", default=None, help="network names")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    mutants = [n for n in MUTANTS if n != "numerical_slack"]
    print(
        "| network | "
        + " | ".join(mutants)
        + " | "
        + " | ".join(f"slack floor ({m})" for m in METHODS)
        + " |"
    )
    print("|---|" + "---|" * (len(mutants) + len(METHODS)))
    for b in load_benchmarks(args.root):
        if args.only and b.name not in args.only:
            continue
        # Every instance with a known counterexample: planted, or a clean one falsified.
        cex = [i for i in b.network.instances if i.ground_truth == "sat"]
        cells = []
        for name in mutants:
            mutant = MUTANTS[name]()
            caught = sum(mutant.verify(b.network, i).verdict == "unsat" for i in cex)
            cells.append(f"{caught}/{len(cex)}" if caught else "-")
        for method in METHODS:
            floor = slack_floor(b.network, cex, method) if cex else -1.0
            # a refused method has no floor: format only a number
            cells.append("refused" if floor is None else "n/a" if floor < 0 else f"{floor:.2g}")
        print(f"| `{b.name}` | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
