"""Record the built-in verifiers' verdicts on every shipped soundness network.

tests/test_reference_verdicts.py checks that a verifier speed-up changes none of them (the
file was recorded before the BoundedModule cache was shared across batch sizes). Re-record,
and review the diff, only when the benchmark or a verifier's algorithm changes on purpose.

Usage: PYTHONPATH=. .venv/bin/python scripts/record_reference_verdicts.py [--out PATH]
       [--only NETWORK ...]   (record these networks, keep the file's other entries)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vcheck.models.zoo import fixtures_dir
from vcheck.profiles import SoundnessProfile
from vcheck.soundness.runner import BUILTIN, load_benchmarks, resolve_verifier

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference_verdicts.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="+", metavar="NETWORK", help="networks to (re)record")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the suite runs them
    budget = SoundnessProfile()
    verdicts: dict[str, dict[str, dict[str, str]]] = {}
    benches = load_benchmarks(fixtures_dir() / "soundness")
    if args.only:
        unknown = set(args.only) - {b.name for b in benches}
        if unknown:
            raise SystemExit(f"--only: no shipped network named {', '.join(sorted(unknown))}")
        verdicts = json.loads(args.out.read_text()) if args.out.is_file() else {}
        benches = [b for b in benches if b.name in args.only]
    for bench in benches:
        for spec in BUILTIN:
            verifier = resolve_verifier(
                spec, timeout=budget.timeout, bab_max_domains=budget.bab_max_domains
            )
            start = time.process_time()
            results = {i.id: verifier.verify(bench.network, i) for i in bench.network.instances}
            print(f"{bench.name:32} {spec:12} {time.process_time() - start:6.1f} s CPU")
            verdicts.setdefault(bench.name, {})[spec] = {k: r.verdict for k, r in results.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
