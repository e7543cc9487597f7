"""Run verifiers over shipped benchmarks: resolve ``--verifier`` specs, adapt external
VNN-COMP commands to the Verifier interface, and collect one Result per instance.

Specs: ``IBP``, ``CROWN``, ``alpha-CROWN``, ``BaB`` (built in, auto_LiRPA),
``cmd:<command with {onnx} {vnnlib} {timeout} {result}>`` (an external VNN-COMP verifier),
or ``package.module:object`` (any object with ``verify(instance)`` or ``verify(net, instance)``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from vcheck.errors import InvalidArgument, UnknownNameError, VcheckWarning
from vcheck.report.document import write_atomic
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.vnncomp import InstanceFiles, instance_files, read_benchmark
from vcheck.verify.external import ExternalVerifier, Result

BUILTIN = ("IBP", "CROWN", "alpha-CROWN", "BaB")


@dataclass
class Benchmark:
    """A benchmark folder read back, with each instance's VNN-COMP files."""

    name: str
    directory: Path
    network: SoundnessNetwork
    files: dict[str, InstanceFiles]


def load_benchmarks(root: Path) -> list[Benchmark]:
    """Every VNN-COMP folder (with a manifest.json) under ``root``, sorted by name."""
    out = []
    for directory in sorted(p for p in Path(root).iterdir() if (p / "manifest.json").is_file()):
        network = read_benchmark(directory)
        rows = instance_files(directory)
        files = {inst.id: row for inst, row in zip(network.instances, rows, strict=True)}
        out.append(Benchmark(directory.name, directory, network, files))
    return out


class FileVerifier:
    """An :class:`ExternalVerifier` seen through the built-in interface: the instance is
    handed over as the benchmark's own .onnx/.vnnlib files."""

    def __init__(self, external: ExternalVerifier, benchmark: Benchmark) -> None:
        self.external, self.benchmark = external, benchmark

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        return self.external.verify(self.benchmark.files[instance.id])


def resolve_verifier(spec: str, *, timeout: float, bab_max_domains: int):
    """The verifier named by ``spec`` (see module docstring); raises with the fix."""
    if spec.startswith("cmd:"):
        return ExternalVerifier(spec[len("cmd:") :], timeout=timeout)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidArgument(f"--verifier={spec}: cannot import {attr!r} ({exc})") from None
        from vcheck.verify.base import PythonVerifier

        return PythonVerifier(obj() if isinstance(obj, type) else obj)
    if spec not in BUILTIN:
        raise UnknownNameError(
            "verifier", spec, BUILTIN, "Or pass cmd:<command> or package.module:object."
        )
    if spec == "BaB":
        from vcheck.verify.bab import BranchAndBound

        return BranchAndBound("CROWN", max_domains=bab_max_domains, timeout=timeout)
    from vcheck.verify.lirpa import LirpaVerifier

    return LirpaVerifier(spec, timeout=timeout)


def run_verifier(
    verifier, benchmark: Benchmark, cache_dir: Path | None = None
) -> dict[str, Result]:
    """One verdict per instance id of ``benchmark``.

    Verdicts of the built-in verifiers are cached under ``cache_dir``, keyed by the verifier's
    settings, the benchmark's manifest and the versions of vcheck and auto_LiRPA; external
    commands and Python objects always run (their code can change under the same name).
    """
    from vcheck.verify.bab import BranchAndBound
    from vcheck.verify.lirpa import LirpaVerifier

    cacheable = cache_dir is not None and type(verifier) in (LirpaVerifier, BranchAndBound)
    path = cache_dir / f"{_cache_key(verifier, benchmark)}.json" if cacheable else None
    if path is not None and path.is_file():
        try:
            return {k: Result(**_result_fields(v)) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, TypeError, KeyError) as exc:
            warnings.warn(
                f"vcheck: ignoring unreadable verdict cache {path} ({exc})",
                VcheckWarning,
                stacklevel=2,
            )
    if isinstance(verifier, ExternalVerifier):
        verifier = FileVerifier(verifier, benchmark)
    results = {i.id: verifier.verify(benchmark.network, i) for i in benchmark.network.instances}
    if path is not None:
        write_atomic(path, json.dumps({k: _result_json(r) for k, r in results.items()}))
    return results


def _cache_key(verifier, benchmark: Benchmark) -> str:
    import importlib.metadata

    import vcheck

    h = hashlib.sha256()
    for part in (
        repr(verifier),
        vcheck.__version__,
        importlib.metadata.version("auto-lirpa"),
        (benchmark.directory / "manifest.json").read_bytes().hex(),
    ):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _result_json(r: Result) -> dict:
    def arr(a):
        return None if a is None else np.asarray(a, np.float64).tolist()

    return {
        "verdict": r.verdict,
        "seconds": r.seconds,
        "reason": r.reason,
        "raw": r.raw,
        "x": arr(r.x),
        "y": arr(r.y),
    }


def _result_fields(d: dict) -> dict:
    return {
        **d,
        "x": None if d["x"] is None else np.asarray(d["x"]),
        "y": None if d["y"] is None else np.asarray(d["y"]),
    }
