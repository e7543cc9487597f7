"""Re-check a shipped benchmark's planted counterexamples before trusting it (the soundness
suite's first gate): every x* inside its box, misclassified in float32, float64 and ONNX
Runtime, not found by an attack at generation, and missed by a fresh PGD run; every stored
witness of a clean instance a genuine counterexample.

Deterministic for the benchmark's files and the code, so the result is cached by both: a warm
run reads it instead of attacking again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import torch

from vcheck.report.document import write_atomic
from vcheck.soundness.attacks import margin, pgd
from vcheck.soundness.needle import FLOAT_NOISE_FACTOR
from vcheck.soundness.runner import Benchmark, code_fingerprint


def benchmark_problems(bench: Benchmark) -> dict[str, str]:
    """Instance id -> what is wrong with its counterexample or witness (empty when sound)."""
    net = bench.network.net.eval()
    instances = bench.network.instances
    cex = [i for i in instances if i.kind == "counterexample"]
    problems: dict[str, str] = {}
    onnx = None
    if cex:
        try:
            from vcheck.soundness.vnncomp import onnx_logits

            # One ONNX Runtime session for every x* of the benchmark.
            onnx = onnx_logits(bench.directory, np.stack([i.x_star for i in cex]))
        except ImportError:  # pragma: no cover - the test extras install it
            pass
    net64 = None
    with torch.no_grad():
        for k, inst in enumerate(cex):
            x = torch.from_numpy(inst.x_star)[None]
            label = torch.tensor([inst.label])
            if not ((inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()):
                problems[inst.id] = "x* outside its box"
            elif (m32 := float(margin(net, x, label))) >= 0:
                problems[inst.id] = "x* not misclassified in float32"
            else:
                if net64 is None:
                    import copy

                    net64 = copy.deepcopy(net).double().eval()
                m64 = float(margin(net64, x.double(), label))
                noise = abs(m32 - m64)
                if onnx is not None:
                    m_onnx = float(onnx[k][inst.label] - onnx[k][inst.target])
                    noise = max(noise, abs(m_onnx - m64))
                if m64 >= 0:
                    problems[inst.id] = "x* not misclassified in float64"
                elif onnx is not None and onnx[k][inst.label] >= onnx[k][inst.target]:
                    problems[inst.id] = "x* not misclassified in ONNX Runtime"
                elif m64 > -FLOAT_NOISE_FACTOR * noise:
                    # Another CPU's float32 kernels round differently, by about as much as
                    # float32 differs from float64 here: a shallower x* would be a
                    # counterexample on some machines only, so it is refused, not trusted.
                    problems[inst.id] = (
                        f"x* misclassified by only {-m64:.3g} in float64, within "
                        f"{FLOAT_NOISE_FACTOR}x its float32 rounding ({noise:.2g}); "
                        "regenerate it deeper"
                    )
            if inst.found_by:
                problems.setdefault(inst.id, f"found by {inst.found_by[0]} at generation")
        # A clean instance's ground truth "sat" from a stored witness must hold up too (ties
        # count: Y_j >= Y_label); exact-arithmetic networks make that safe in every float type.
        for inst in instances:
            if inst.kind != "clean" or inst.ground_truth != "sat" or inst.x_star is None:
                continue
            x, label = torch.from_numpy(inst.x_star)[None], torch.tensor([inst.label])
            inside = (inst.lower <= inst.x_star).all() and (inst.x_star <= inst.upper).all()
            if not inside or float(margin(net, x, label)) > 0:
                problems[inst.id] = "stored witness is not a counterexample"
    # A fresh attack with its own seed must not find them either.
    if cex:
        lower = torch.from_numpy(np.stack([i.lower for i in cex]))
        upper = torch.from_numpy(np.stack([i.upper for i in cex]))
        labels = torch.tensor([i.label for i in cex])
        found = pgd(
            net, lower, upper, labels, rel_step=0.02, steps=200, restarts=10, seed=12345
        ).found
        for inst, hit in zip(cex, found.tolist(), strict=True):
            if hit:
                problems.setdefault(inst.id, "found by a fresh PGD run")
    return problems


def cached_benchmark_problems(bench: Benchmark, cache_dir: Path | None) -> dict[str, str]:
    """:func:`benchmark_problems`, stored under ``cache_dir`` keyed by every file of the
    benchmark folder, the instances selected, vcheck's verifier and benchmark code and the
    torch and ONNX Runtime versions; a damaged entry is recomputed."""
    if cache_dir is None:
        return benchmark_problems(bench)
    path = Path(cache_dir) / f"{_key(bench)}.json"
    try:
        stored = json.loads(path.read_text())
        if isinstance(stored, dict) and all(isinstance(v, str) for v in stored.values()):
            return stored
    except (OSError, ValueError):
        pass
    problems = benchmark_problems(bench)
    write_atomic(path, json.dumps(problems))
    return problems


def _key(bench: Benchmark) -> str:
    import vcheck

    h = hashlib.sha256()
    for part in (
        vcheck.__version__,
        code_fingerprint(),
        torch.__version__,
        _version("onnxruntime"),
        ",".join(i.id for i in bench.network.instances),  # the run's selection of them
    ):
        h.update(part.encode() + b"\0")
    for f in sorted(p for p in bench.directory.rglob("*") if p.is_file()):
        h.update(f.relative_to(bench.directory).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"
