"""Run verifiers over shipped benchmarks: resolve ``--verifier`` specs, adapt external
VNN-COMP commands to the Verifier interface, and collect one Result per instance.

Specs: ``IBP``, ``CROWN``, ``alpha-CROWN``, ``BaB`` (built in, auto_LiRPA),
``cmd:<command with {onnx} {vnnlib} {timeout} {result}>`` (an external VNN-COMP verifier),
or ``package.module:object`` (any object with ``verify(instance)`` or ``verify(net, instance)``).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from vcheck.errors import InvalidArgument, UnknownNameError, VcheckWarning
from vcheck.progress import Progress
from vcheck.report.document import write_atomic
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.vnncomp import InstanceFiles, instance_files, read_benchmark
from vcheck.verify.external import VERDICTS, ExternalVerifier, Result

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
    folders = sorted(p for p in Path(root).iterdir() if (p / "manifest.json").is_file())
    return [load_benchmark(directory) for directory in folders]


def load_benchmark(directory: Path) -> Benchmark:
    """One benchmark folder written by make_benchmark (or any VNN-COMP folder with a manifest)."""
    network = read_benchmark(directory)
    rows = instance_files(directory)
    files = {inst.id: row for inst, row in zip(network.instances, rows, strict=True)}
    return Benchmark(directory.name, directory, network, files)


def select_instances(bench: Benchmark, per_kind: int) -> Benchmark:
    """The benchmark with only the first ``per_kind`` instances of each kind (counterexample,
    clean) in the manifest's order (the benchmark author's; make_benchmark shuffles it), so
    the choice is fixed by the files; ``per_kind`` 0 keeps every instance.

    Why: almost all of a cold soundness run is the counterexample instances, which no sound
    method proves, so alpha-CROWN and branch and bound spend their whole budget on each (3.4 s
    per instance on the 2-conv network). The needle networks' ten x* per network all sit at
    the same depth; the graded networks (three of each kind) are what the slack floors rest on.
    """
    if per_kind == 0:
        return bench
    taken: dict[str, int] = {}
    ids = []
    for inst in bench.network.instances:
        taken[inst.kind] = taken.get(inst.kind, 0) + 1
        if taken[inst.kind] <= per_kind:
            ids.append(inst.id)
    return keep_instances(bench, ids)


def keep_instances(bench: Benchmark, ids: Sequence[str]) -> Benchmark:
    """The benchmark with only the instances whose id is in ``ids`` (in its own order)."""
    wanted = set(ids)
    keep = [i for i in bench.network.instances if i.id in wanted]
    if len(keep) == len(bench.network.instances):
        return bench
    network = replace(bench.network, instances=keep)
    return replace(bench, network=network, files={i.id: bench.files[i.id] for i in keep})


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
            raise InvalidArgument(
                f"--verifier={spec}: cannot import {attr!r} from {module_name!r} ({exc}); check "
                "the module path (and PYTHONPATH)"
            ) from None
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


def check_verifier_spec(spec: str) -> None:
    """Raise (one line, with the fix) if ``spec`` cannot name a verifier; builds nothing
    expensive, so a typo stops the run before any test. External commands must start an
    executable that exists; ``package.module:object`` must import and have ``verify``."""
    if spec.startswith("cmd:"):
        external = ExternalVerifier(spec[len("cmd:") :], timeout=1.0)
        exe = external.argv("x.onnx", "x.vnnlib", "result")[0] if not external.shell else None
        if exe is not None and shutil.which(exe) is None:
            where = "no such executable file" if os.sep in exe else "not found on PATH"
            raise InvalidArgument(
                f"{exe!r}: {where}; give the verifier's full path in cmd:<command>"
            )
        return
    if ":" in spec:
        try:
            resolve_verifier(spec, timeout=1.0, bab_max_domains=1)
        except InvalidArgument as exc:
            raise InvalidArgument(str(exc).removeprefix(f"--verifier={spec}: ")) from None
        except Exception as exc:  # the user's object failed to build: still their mistake
            raise InvalidArgument(
                f"building the verifier raised {type(exc).__name__}: {exc}; fix the object "
                "or its module"
            ) from None
        return
    if spec in BUILTIN:
        return
    lower = {b.lower(): b for b in BUILTIN}
    match = difflib.get_close_matches(spec.lower(), list(lower), n=1, cutoff=0.6)
    hint = f"did you mean {lower[match[0]]!r}? " if match else ""
    raise InvalidArgument(
        f"not a known verifier; {hint}the built-in ones are {', '.join(BUILTIN)}; or pass "
        "cmd:<command with {result}> or package.module:object"
    )


def check_soundness_dir(path: Path) -> None:
    """Raise unless ``path`` is a folder holding at least one benchmark folder (with a
    manifest.json): a typo must not deselect the whole soundness suite."""
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise InvalidArgument(
            f"{path} {what}; pass a folder of VNN-COMP benchmark folders (the shipped one is "
            "fixtures/soundness)"
        )
    if not any((p / "manifest.json").is_file() for p in path.iterdir()):
        raise InvalidArgument(
            f"{path} holds no benchmark folder (none has a manifest.json); pass a folder of "
            "benchmarks written by make_benchmark (the shipped one is fixtures/soundness)"
        )


def run_verifier(
    verifier,
    benchmark: Benchmark,
    cache_dir: Path | None = None,
    write: Callable[[str], None] | None = None,
    label: str | None = None,
    interval: float = 2.0,
) -> dict[str, Result]:
    """One verdict per instance id of ``benchmark``.

    Verdicts of the built-in verifiers are cached under ``cache_dir``, keyed by the verifier's
    settings, the benchmark's manifest, a fingerprint of vcheck's verifier code and the
    versions of vcheck and auto_LiRPA; external commands and Python objects always run (their
    code can change under the same name). Only final answers are cached: "sat", "unsat",
    "unknown" and refusals by design; a "timeout" or another "error" is computed again next
    run, and a damaged or malformed entry is recomputed (and rewritten). ``write`` gets
    progress lines (``label`` on the benchmark, instances done), at most every ``interval``
    seconds and once at the end, while instances are verified.
    """
    from vcheck.verify.bab import BranchAndBound
    from vcheck.verify.lirpa import LirpaVerifier

    cacheable = cache_dir is not None and type(verifier) in (LirpaVerifier, BranchAndBound)
    path = cache_dir / f"{_cache_key(verifier, benchmark)}.json" if cacheable else None
    cached = _read_cache(path) if path is not None and path.is_file() else {}
    if isinstance(verifier, ExternalVerifier):
        verifier = FileVerifier(verifier, benchmark)
    todo = [i for i in benchmark.network.instances if i.id not in cached]
    progress = (
        Progress(
            f"vcheck: {label or repr(verifier)} on {benchmark.name}",
            len(todo),
            write,
            interval,
            unit="instances",
        )
        if write and todo
        else None
    )
    fresh = {}
    for inst in todo:
        fresh[inst.id] = verifier.verify(benchmark.network, inst)
        if progress:
            progress.update(1)
    results = {i.id: cached.get(i.id) or fresh[i.id] for i in benchmark.network.instances}
    keep = {k: r for k, r in results.items() if is_final(r)}
    if path is not None and keep.keys() != cached.keys():
        write_atomic(path, json.dumps({k: _result_json(r) for k, r in keep.items()}))
    return results


def has_cached_verdicts(verifier, benchmark: Benchmark, cache_dir: Path | None) -> bool:
    """Whether :func:`run_verifier` would answer every instance from the cache (no work)."""
    from vcheck.verify.bab import BranchAndBound
    from vcheck.verify.lirpa import LirpaVerifier

    if cache_dir is None or type(verifier) not in (LirpaVerifier, BranchAndBound):
        return False
    path = cache_dir / f"{_cache_key(verifier, benchmark)}.json"
    if not path.is_file():
        return False
    with warnings.catch_warnings():  # a damaged entry warns when run_verifier reads it
        warnings.simplefilter("ignore", VcheckWarning)
        cached = _read_cache(path)
    return all(i.id in cached for i in benchmark.network.instances)


def is_final(result: Result) -> bool:
    """Whether a verdict is the same next run: an answer or a refusal by design (a "timeout"
    or a crash may go otherwise on another run, so neither is cached)."""
    return result.verdict in ("sat", "unsat", "unknown") or (
        result.verdict == "error" and result.refused
    )


def _read_cache(path: Path) -> dict[str, Result]:
    """The well-formed final verdicts stored at ``path``; anything else is left out (and so
    recomputed), with one warning."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        stored, problem = {}, f"unreadable ({exc})"
    else:
        problem = None if isinstance(stored, dict) else f"a {type(stored).__name__}, not an object"
    out: dict[str, Result] = {}
    for key, value in stored.items() if isinstance(stored, dict) else ():
        try:
            result = Result(**_result_fields(value))
        except (TypeError, ValueError, KeyError):
            result = None
        if result is None or result.verdict not in VERDICTS or not is_final(result):
            problem = problem or f"entry {key!r} is malformed"
            continue
        out[key] = result
    if problem:
        warnings.warn(
            f"vcheck: verdict cache {path}: {problem}; recomputing", VcheckWarning, stacklevel=3
        )
    return out


# vcheck's verifier code: a change to any of these files gives fresh verdicts on a warm cache.
CODE_ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("verify", "soundness")


def code_fingerprint(root: Path | None = None) -> str:
    """SHA-256 over the verifier code of vcheck (``CODE_DIRS``' Python files under ``root``)."""
    root = CODE_ROOT if root is None else root
    files = sorted(f for d in CODE_DIRS for f in (root / d).glob("*.py"))
    stamps = tuple((str(f), (st := f.stat()).st_mtime_ns, st.st_size) for f in files)
    return _code_fingerprint(root, stamps)


@functools.lru_cache(maxsize=8)  # every verdict cache key asks: hash once per state of the files
def _code_fingerprint(root: Path, stamps: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for name, _, _ in stamps:
        p = Path(name)
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _cache_key(verifier, benchmark: Benchmark) -> str:
    import importlib.metadata

    import vcheck

    h = hashlib.sha256()
    for part in (
        repr(verifier),
        vcheck.__version__,
        importlib.metadata.version("auto-lirpa"),
        code_fingerprint(),
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
        "refused": r.refused,
        "bound": r.bound,
    }


def _result_fields(d: dict) -> dict:
    if not isinstance(d, dict):
        raise TypeError(f"a {type(d).__name__}, not an object")
    return {
        **d,
        "x": None if d["x"] is None else np.asarray(d["x"], np.float64),
        "y": None if d["y"] is None else np.asarray(d["y"], np.float64),
    }
