"""A soundness benchmark on disk in VNN-COMP layout, so any verifier can run it.

Folder layout (all paths relative to the folder)::

    model.onnx        opset 13, input "input", output "output", dynamic batch
    model.pt          {"spec": arch.spec_of(net), "state_dict": ...}: rebuilt without pickled code
    vnnlib/{i}.vnnlib one property per instance, in manifest order
    instances.csv     VNN-COMP's three columns: onnx, vnnlib, timeout (no header)
    manifest.json     network name, shapes, settings, and every instance's full record (kind,
                      label, target, x*, ground truth, hidden_from, ...)

What is private to the benchmark (kind, x*, ground truth) lives only in the manifest: the
property files and the CSV hold nothing a verifier could use to tell instances apart, and a
reader takes each instance's kind from the manifest, never from its position. The manifest
also stores the SHA-256 of both model files, so model.onnx and model.pt from different writes
are caught. Every file is written atomically, the manifest last.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import io
import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError
from vcheck.soundness import arch
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.vnnlib import PathLike, atomic_write_bytes, format_property, read_property

FORMAT = "vcheck-soundness-benchmark"
VERSION = 1
ONNX_FILE = "model.onnx"
TORCH_FILE = "model.pt"
CSV_FILE = "instances.csv"
MANIFEST_FILE = "manifest.json"
VNNLIB_DIR = "vnnlib"
OPSET = 13
_INSTALL = "pip install onnx onnxruntime"


@dataclass(frozen=True)
class InstanceFiles:
    """One row of instances.csv with absolute paths: what a VNN-COMP verifier is given."""

    onnx: Path
    vnnlib: Path
    timeout: float


def write_benchmark(network: SoundnessNetwork, directory: PathLike, timeout: float = 60.0) -> Path:
    """Write ``network`` and its instances to ``directory`` in VNN-COMP layout; returns it.

    ``timeout`` (seconds) is the per-instance budget in instances.csv. Property files of an
    earlier, larger write to the same folder are removed so the folder matches the manifest.
    """
    directory = Path(directory)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise InvalidArgument(f"timeout={timeout!r}; pass a positive number of seconds")
    net = network.net
    shape = tuple(int(s) for s in network.input_shape)
    _check_instances(network, shape)
    try:
        settings_json = json.loads(json.dumps(network.settings, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InvalidArgument(
            f"network.settings of {network.name!r} is not JSON-serialisable ({e}); "
            "store plain finite numbers, strings, lists and dicts"
        ) from e
    if not math.isfinite(network.seconds):
        raise InvalidArgument(f"network.seconds={network.seconds!r}; pass a finite duration")
    timeout_text = str(int(timeout)) if float(timeout).is_integer() else repr(float(timeout))

    model_pt = _torch_bytes(net)
    model_onnx = _onnx_bytes(net, shape)
    atomic_write_bytes(directory / TORCH_FILE, model_pt)
    atomic_write_bytes(directory / ONNX_FILE, model_onnx)

    records = []
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    for i, inst in enumerate(network.instances):
        rel = f"{VNNLIB_DIR}/{i}.vnnlib"
        # The comment must not reveal kind, id or x*: a verifier reads this file.
        text = format_property(
            inst.lower,
            inst.upper,
            inst.label,
            network.num_classes,
            comment=f"vcheck soundness benchmark {network.name}, property {i}",
        )
        atomic_write_bytes(directory / rel, text.encode("ascii"))
        writer.writerow([ONNX_FILE, rel, timeout_text])
        records.append({"vnnlib": rel, **inst.to_json()})
    _remove_stale_properties(directory, len(network.instances))
    atomic_write_bytes(directory / CSV_FILE, rows.getvalue().encode("utf-8"))

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": network.name,
        "input_shape": list(shape),
        "num_classes": network.num_classes,
        "settings": settings_json,
        "seconds": network.seconds,
        "timeout": float(timeout),
        "onnx": {"file": ONNX_FILE, "opset": OPSET, "sha256": _sha256(model_onnx)},
        "torch": {"file": TORCH_FILE, "sha256": _sha256(model_pt)},
        "instances": records,
    }
    text = json.dumps(manifest, indent=1, allow_nan=False) + "\n"
    atomic_write_bytes(directory / MANIFEST_FILE, text.encode("utf-8"))
    return directory


def read_benchmark(directory: PathLike) -> SoundnessNetwork:
    """Rebuild the network and instances from a folder :func:`write_benchmark` wrote.

    Checks that the manifest, instances.csv, the property files and the model files agree
    (same boxes, labels, class count, hashes); any disagreement is a one-line
    CorruptArtefactError naming the file.
    """
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    m = _read_manifest(manifest_path)
    shape = tuple(m["input_shape"])
    num_classes = int(m["num_classes"])

    pt_path = directory / TORCH_FILE
    pt_bytes = _read_bytes(pt_path)
    if _sha256(pt_bytes) != m["torch"]["sha256"]:
        raise CorruptArtefactError(
            f"{pt_path}: SHA-256 differs from {MANIFEST_FILE}; the folder mixes files from two "
            "writes, rewrite it with write_benchmark"
        )
    onnx_path = directory / ONNX_FILE
    if _sha256(_read_bytes(onnx_path)) != m["onnx"]["sha256"]:
        raise CorruptArtefactError(
            f"{onnx_path}: SHA-256 differs from {MANIFEST_FILE}; the folder mixes files from two "
            "writes, rewrite it with write_benchmark"
        )
    net = _load_net(pt_path, pt_bytes, shape, num_classes)

    try:
        instances = [Instance.from_json(r) for r in m["instances"]]
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptArtefactError(
            f"{manifest_path}: an instance record is malformed ({type(e).__name__}: {e}); "
            "rewrite the benchmark with write_benchmark"
        ) from e

    rows = _read_instances_csv(directory)
    if len(rows) != len(instances):
        raise CorruptArtefactError(
            f"{directory / CSV_FILE}: {len(rows)} rows but {MANIFEST_FILE} lists "
            f"{len(instances)} instances; rewrite the benchmark with write_benchmark"
        )
    n_inputs = math.prod(shape)
    for lineno, (row, record, inst) in enumerate(
        zip(rows, m["instances"], instances, strict=True), start=1
    ):
        csv_where = f"{directory / CSV_FILE}:{lineno}"
        if row.onnx != onnx_path or row.vnnlib != directory / record["vnnlib"]:
            raise CorruptArtefactError(
                f"{csv_where}: row names {row.onnx}, {row.vnnlib} but {MANIFEST_FILE} has "
                f"{ONNX_FILE}, {record['vnnlib']} for instance {inst.id!r}; rewrite the benchmark"
            )
        prop = read_property(row.vnnlib)
        where = f"{row.vnnlib}: property of instance {inst.id!r} disagrees with {MANIFEST_FILE}"
        if inst.lower.shape != shape or inst.upper.shape != shape or prop.num_inputs != n_inputs:
            raise CorruptArtefactError(
                f"{where}: {prop.num_inputs} inputs, box of shape {inst.lower.shape}, "
                f"input shape {shape}"
            )
        box_ok = np.array_equal(prop.lower, inst.lower.astype(np.float64).ravel()) and (
            np.array_equal(prop.upper, inst.upper.astype(np.float64).ravel())
        )
        if not box_ok:
            raise CorruptArtefactError(f"{where}: the input box differs")
        expected_targets = tuple(j for j in range(num_classes) if j != inst.label)
        if prop.label != inst.label or prop.num_classes != num_classes:
            raise CorruptArtefactError(
                f"{where}: label {prop.label} of {prop.num_classes} outputs, expected "
                f"{inst.label} of {num_classes}"
            )
        if prop.targets != expected_targets:
            raise CorruptArtefactError(
                f"{where}: targets {list(prop.targets)}, expected {list(expected_targets)}"
            )

    return SoundnessNetwork(
        name=m["name"],
        net=net,
        input_shape=shape,
        num_classes=num_classes,
        instances=instances,
        settings=m["settings"],
        seconds=float(m["seconds"]),
    )


def instance_files(directory: PathLike) -> list[InstanceFiles]:
    """The rows of ``directory``/instances.csv, paths made absolute, in order."""
    return _read_instances_csv(Path(directory))


def onnx_logits(directory: PathLike, x: np.ndarray) -> np.ndarray:
    """Logits of the benchmark's model.onnx under ONNX Runtime (CPU), float32.

    An independent forward pass: a counterexample must also hold in the file verifiers read.
    ``x`` is one input (the network's input shape) or a batch of them; the result is batched
    the same way.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(f"onnx_logits needs onnxruntime: {_INSTALL}") from e
    path = Path(directory) / ONNX_FILE
    if not path.is_file():
        raise MissingArtefactError(f"{path}: not found; write the benchmark with write_benchmark")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = tuple(inp.shape[1:])
    xs = np.asarray(x, dtype=np.float32)
    single = xs.shape == shape
    if single:
        xs = xs[None]
    if xs.shape[1:] != shape:
        raise InvalidArgument(
            f"x has shape {np.shape(x)}; model.onnx takes {shape} or a batch (B, *{shape})"
        )
    (out,) = session.run(["output"], {inp.name: np.ascontiguousarray(xs)})
    return out[0] if single else out


# --- helpers -----------------------------------------------------------------------------


def _check_instances(network: SoundnessNetwork, shape: tuple[int, ...]) -> None:
    ids = set()
    for inst in network.instances:
        if inst.id in ids:
            raise InvalidArgument(
                f"instance id {inst.id!r} appears twice; give instances unique ids"
            )
        ids.add(inst.id)
        for name in ("center", "lower", "upper", "x_star"):
            a = getattr(inst, name)
            if a is not None and tuple(np.shape(a)) != shape:
                raise InvalidArgument(
                    f"instance {inst.id!r}: {name} has shape {np.shape(a)}, the network's input "
                    f"shape is {shape}; build instances with the network's input shape"
                )
        if not 0 <= inst.label < network.num_classes:
            raise InvalidArgument(
                f"instance {inst.id!r}: label {inst.label} is not in [0, {network.num_classes})"
            )


def _torch_bytes(net: torch.nn.Module) -> bytes:
    if not isinstance(net, torch.nn.Sequential):
        raise InvalidArgument(
            f"network is a {type(net).__name__}; benchmarks store plain nn.Sequential nets "
            "(see vcheck.soundness.arch)"
        )
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save({"spec": arch.spec_of(net), "state_dict": state}, buf)
    return buf.getvalue()


def _onnx_bytes(net: torch.nn.Module, shape: tuple[int, ...]) -> bytes:
    if importlib.util.find_spec("onnx") is None:
        raise ImportError(f"writing model.onnx needs the onnx package: {_INSTALL}")
    model = copy.deepcopy(net).cpu().float().eval()  # leaves the caller's net (mode) untouched
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but is the one that needs no torch.export.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (torch.zeros((1, *shape)),),
            buf,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise MissingArtefactError(
            f"{path}: not found; write the benchmark with write_benchmark"
        ) from e


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        m = json.loads(_read_bytes(path))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptArtefactError(f"{path}: not valid JSON ({e}); rewrite it") from e
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CorruptArtefactError(
            f"{path}: not a {FORMAT} manifest; write it with write_benchmark"
        )
    if m.get("version") != VERSION:
        raise CorruptArtefactError(
            f"{path}: version {m.get('version')!r}, this vcheck reads version {VERSION}; "
            "rewrite the benchmark with this vcheck"
        )
    problem = _manifest_problem(m)
    if problem:
        raise CorruptArtefactError(f"{path}: {problem}; rewrite it with write_benchmark")
    return m


def _manifest_problem(m: dict[str, Any]) -> str | None:
    """What is structurally wrong with a manifest (so later lookups cannot fail), or None."""
    need = ("name", "input_shape", "num_classes", "settings", "seconds", "onnx", "torch")
    missing = [k for k in (*need, "instances") if k not in m]
    if missing:
        return f"missing key(s) {missing}"
    shape = m["input_shape"]
    if not (isinstance(shape, list) and shape and all(isinstance(v, int) and v > 0 for v in shape)):
        return f"input_shape {shape!r} is not a list of positive integers"
    if not (isinstance(m["num_classes"], int) and m["num_classes"] >= 2):
        return f"num_classes {m['num_classes']!r} is not an integer >= 2"
    if not isinstance(m["seconds"], int | float):
        return f"seconds {m['seconds']!r} is not a number"
    for key in ("onnx", "torch"):
        if not (isinstance(m[key], dict) and isinstance(m[key].get("sha256"), str)):
            return f"{key!r} lacks its sha256"
    records = m["instances"]
    if not (isinstance(records, list) and all(isinstance(r, dict) for r in records)):
        return "instances is not a list of records"
    if not all(isinstance(r.get("vnnlib"), str) for r in records):
        return "an instance record lacks its vnnlib path"
    return None


def _load_net(
    path: Path, data: bytes, shape: tuple[int, ...], num_classes: int
) -> torch.nn.Sequential:
    try:
        blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        net = arch.build(blob["spec"])
        net.load_state_dict(blob["state_dict"], strict=True)
    except Exception as e:  # unpickling, missing keys, shape mismatch: all mean a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CorruptArtefactError(
            f"{path}: cannot rebuild the network ({type(e).__name__}: {first}); "
            "rewrite the benchmark with write_benchmark"
        ) from e
    net.eval()
    with torch.no_grad():
        try:
            out = net(torch.zeros((1, *shape)))
        except RuntimeError as e:
            raise CorruptArtefactError(
                f"{path}: the network does not take inputs of shape {shape} ({e})"
            ) from e
    if tuple(out.shape) != (1, num_classes):
        raise CorruptArtefactError(
            f"{path}: the network gives {tuple(out.shape[1:])} outputs, the manifest says "
            f"{num_classes} classes"
        )
    return net


def _read_instances_csv(directory: Path) -> list[InstanceFiles]:
    path = directory / CSV_FILE
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptArtefactError(f"{path}: not UTF-8 text ({e})") from e
    rows = []
    reader = csv.reader(io.StringIO(text))
    for row in reader:
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{reader.line_num}"
        if len(row) != 3:
            raise CorruptArtefactError(
                f"{where}: {len(row)} columns, expected 3 (onnx, vnnlib, timeout)"
            )
        onnx, vnnlib, timeout = (c.strip() for c in row)
        try:
            t = float(timeout)
        except ValueError:
            t = math.nan
        if not (math.isfinite(t) and t > 0):
            raise CorruptArtefactError(f"{where}: timeout {timeout!r} is not a positive number")
        rows.append(InstanceFiles(directory / onnx, directory / vnnlib, t))
    return rows


def _remove_stale_properties(directory: Path, n: int) -> None:
    folder = directory / VNNLIB_DIR
    for p in folder.glob("*.vnnlib"):
        m = re.fullmatch(r"(\d+)\.vnnlib", p.name)
        if m and int(m[1]) >= n:
            p.unlink()
