"""The README's per-architecture soundness tables, measured on the shipped benchmark.

For every network in fixtures/soundness (or --root): its architecture, radius, how many
planted counterexamples stayed hidden from which attacks (from the manifest, as recorded at
generation), clean ground truth, generation time; then each built-in verifier's verdicts on
clean instances and any "unsat" on a counterexample instance, with the seconds it took,
using the profile defaults (per-instance timeout 30 s, branch and bound 50 domains).

Usage: .venv/bin/python benchmarks/soundness_table.py [--root DIR] [--verifiers IBP CROWN ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from vcheck.models.zoo import fixtures_dir
from vcheck.profiles import SoundnessProfile
from vcheck.soundness.runner import BUILTIN, load_benchmarks, resolve_verifier, run_verifier


def describe(settings: dict) -> str:
    """A short architecture label from a network's recorded settings."""
    if "construction" in settings:
        return "hand-built ReLU, 3 classes"
    act = settings.get("activation", "relu")
    convs, hidden = settings.get("convs", []), settings.get("hidden", [])
    parts = [f"{len(convs)} conv ({'/'.join(map(str, convs))} ch)"] if convs else []
    if settings.get("pool"):
        parts.append(f"avgpool {settings['pool']}")
    parts.append(f"dense {'-'.join(map(str, hidden))}")
    return f"{act}: " + ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=fixtures_dir() / "soundness")
    parser.add_argument("--verifiers", nargs="*", default=list(BUILTIN))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budget = SoundnessProfile()
    benches = load_benchmarks(args.root)
    print(
        "| network | architecture | eps | counterexamples hidden / planted | sign draws |"
        " clean ground truth (unsat/sat/unknown) | generation |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for b in benches:
        s, inst = b.network.settings, b.network.instances
        cex = [i for i in inst if i.kind == "counterexample"]
        planted = s.get("counterexamples", 0)
        truth = Counter(i.ground_truth for i in inst if i.kind == "clean")
        eps = sorted({i.eps for i in inst})
        draws = s.get("sign_draws")
        found = Counter(a for attacks in s.get("found_by", {}).values() for a in attacks)
        print(
            f"| `{b.name}` | {describe(s)} | {', '.join(f'{e:g}' for e in eps)} | "
            f"{len(cex)} / {planted} | {'-' if draws is None else sum(draws)} | "
            f"{', '.join(f'{a} ({n})' for a, n in found.most_common()) or '-'} | "
            f"{truth['unsat']}/{truth['sat']}/{truth['unknown']} | "
            f"{b.network.seconds:.0f} s |"
        )
    attacks = sorted({a for b in benches for i in b.network.instances for a in i.hidden_from})
    print(f"\nAttacks run on every instance at generation ({len(attacks)}):")
    for a in attacks:
        print(f"- {a}")
    print("\n| network | " + " | ".join(args.verifiers) + " |")
    print("|---|" + "---|" * len(args.verifiers))
    for b in benches:
        clean = [i for i in b.network.instances if i.kind == "clean"]
        cex = {i.id for i in b.network.instances if i.kind == "counterexample"}
        cells = []
        for spec in args.verifiers:
            verifier = resolve_verifier(
                spec, timeout=budget.timeout, bab_max_domains=budget.bab_max_domains
            )
            start = time.perf_counter()
            verdicts = run_verifier(verifier, b)
            seconds = time.perf_counter() - start
            proved = sum(verdicts[i.id].verdict == "unsat" for i in clean)
            falsified = sum(verdicts[i.id].verdict == "sat" for i in clean)
            unsound = sum(verdicts[k].verdict == "unsat" for k in cex)
            cell = f"{proved}/{len(clean)} proved"
            errors = sum(verdicts[i.id].verdict == "error" for i in clean)
            if falsified:
                cell += f", {falsified} sat"
            if errors:
                cell += f", {errors} refused"
            if unsound:
                cell += f", **{unsound} unsat on counterexamples**"
            cells.append(f"{cell} ({seconds:.1f} s)")
            print(f"  {b.name} {spec}: {cell} ({seconds:.1f} s)", file=sys.stderr, flush=True)
        print(f"| `{b.name}` | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
