"""VNN-LIB robustness properties: write them for any verifier, read back exactly what we wrote.

A property file states the *violation* (VNN-COMP convention): "sat" means some input in the box
makes a target class score at least as high as the label. Layout::

    ; comment lines
    (declare-const X_0 Real)           one per flattened input, in order
    (declare-const Y_0 Real)           one per output
    (assert (<= X_0 0.1))              upper then lower bound of every input
    (assert (>= X_0 -0.1))
    (assert (or
        (and (>= Y_1 Y_0))             one clause per target class
    ))

Exactness guarantee: every bound is first rounded to float32 (the dtype of the networks and
instances), then written as the shortest decimal that parses back to that value as a float64.
So ``float(text) == float(np.float32(v))`` bit for bit: a verifier reading the box in float32 or
in float64 gets the same box, and a float32 point inside the instance's box is inside the
written box with no tolerance. :func:`read_property` returns these exact values.

The reader is deliberately small: it accepts this layout (and the one-line ``(assert (or ...))``
form) and rejects anything else with the file and line, rather than half-understanding it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError

PathLike = str | os.PathLike[str]

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_DECLARE = re.compile(r"\(declare-const ([XY])_(\d+) Real\)")
_BOUND = re.compile(rf"\(assert \((<=|>=) X_(\d+) ({_NUM})\)\)")
_OR_OPEN = re.compile(r"\(assert \(or")
_CLAUSE = re.compile(r"\(and \(>= Y_(\d+) Y_(\d+)\)\)")
_OR_CLOSE = re.compile(r"\)\)")
_OR_ONE_LINE = re.compile(r"\(assert \(or((?: ?\(and \(>= Y_\d+ Y_\d+\)\))+)\)\)")


@dataclass(frozen=True, eq=False)
class Property:
    """A parsed robustness property: the input box (flattened, float64) and the output spec.

    ``targets`` are the classes j whose ``Y_j >= Y_label`` is a violation.
    """

    lower: np.ndarray
    upper: np.ndarray
    label: int
    targets: tuple[int, ...]
    num_classes: int

    @property
    def num_inputs(self) -> int:
        return int(self.lower.size)


def format_bound(value: float) -> str:
    """``value`` rounded to float32, as the shortest decimal that parses back to it exactly.

    Positional notation (no exponent), always with a decimal point, since some VNN-LIB readers
    do not accept ``1e-05``.
    """
    f = float(np.float32(value)) + 0.0  # + 0.0 turns -0.0 into 0.0: same value, plainer text
    if not math.isfinite(f):
        raise InvalidArgument(f"bound {value!r} is not finite in float32; use finite box bounds")
    return np.format_float_positional(f, unique=True, trim="0")


def format_property(
    lower: np.ndarray | Sequence[float],
    upper: np.ndarray | Sequence[float],
    label: int,
    num_classes: int,
    targets: Sequence[int] | None = None,
    comment: str = "",
) -> str:
    """The VNN-LIB text of :func:`write_property` (no file written)."""
    with np.errstate(over="ignore"):  # an overflow to inf is reported below
        lo = np.asarray(lower, dtype=np.float32).ravel()
        hi = np.asarray(upper, dtype=np.float32).ravel()
    if lo.shape != hi.shape or lo.size == 0:
        raise InvalidArgument(
            f"lower has {lo.size} values and upper {hi.size}; pass two non-empty arrays "
            "of the same size"
        )
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise InvalidArgument("box bounds must be finite in float32; clamp them first")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(
            f"lower[{i}]={lo[i]} > upper[{i}]={hi[i]} after float32 rounding; pass lower <= upper"
        )
    targets_t = _check_output_spec(label, num_classes, targets)

    lines = [f"; {line}".rstrip() for line in comment.splitlines()] if comment else []
    lines.append(
        f"; robustness of class {label}: sat = some input in the box scores a target class "
        ">= the label"
    )
    lines.append("")
    lines += [f"(declare-const X_{i} Real)" for i in range(lo.size)]
    lines.append("")
    lines += [f"(declare-const Y_{j} Real)" for j in range(num_classes)]
    lines.append("")
    lines.append("; input box")
    for i in range(lo.size):
        lines.append(f"(assert (<= X_{i} {format_bound(hi[i])}))")
        lines.append(f"(assert (>= X_{i} {format_bound(lo[i])}))")
    lines.append("")
    lines.append("; output: violated if any target class scores at least the label")
    lines.append("(assert (or")
    lines += [f"    (and (>= Y_{j} Y_{label}))" for j in targets_t]
    lines.append("))")
    return "\n".join(lines) + "\n"


def write_property(
    path: PathLike,
    lower: np.ndarray | Sequence[float],
    upper: np.ndarray | Sequence[float],
    label: int,
    num_classes: int,
    targets: Sequence[int] | None = None,
    comment: str = "",
) -> Path:
    """Write the robustness property of ``label`` over the box [lower, upper] to ``path``.

    ``targets`` defaults to every class but ``label``. Bounds are written so that they parse
    back to exactly their float32 values (see the module docstring). The write is atomic.
    """
    text = format_property(lower, upper, label, num_classes, targets, comment)
    path = Path(path)
    atomic_write_bytes(path, text.encode("ascii"))
    return path


def read_property(path: PathLike) -> Property:
    """Parse a property in the layout :func:`write_property` writes.

    Raises CorruptArtefactError naming the file and line for anything outside that layout.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as e:
        raise MissingArtefactError(f"{path}: property file not found") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CorruptArtefactError(f"{path}: cannot read the property file ({e})") from e

    def fail(lineno: int, msg: str) -> CorruptArtefactError:
        where = f"{path}:{lineno}" if lineno else str(path)
        return CorruptArtefactError(f"{where}: {msg} (vcheck reads only the layout it writes)")

    xs: list[int] = []
    ys: list[int] = []
    upper: dict[int, float] = {}
    lower: dict[int, float] = {}
    clauses: list[tuple[int, int, int]] = []  # (target, label, line)
    in_or = 0  # line number of an open "(assert (or", else 0
    seen_or = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if in_or:
            if m := _CLAUSE.fullmatch(line):
                clauses.append((int(m[1]), int(m[2]), lineno))
            elif _OR_CLOSE.fullmatch(line):
                in_or = 0
            else:
                raise fail(lineno, f"expected '(and (>= Y_j Y_label))' or '))', got {line!r}")
            continue
        if m := _DECLARE.fullmatch(line):
            seq = xs if m[1] == "X" else ys
            idx = int(m[2])
            if idx != len(seq):
                raise fail(
                    lineno, f"{m[1]}_{idx} declared out of order (expected {m[1]}_{len(seq)})"
                )
            if m[1] == "X" and ys:
                raise fail(lineno, "X declared after Y")
            seq.append(idx)
        elif m := _BOUND.fullmatch(line):
            op, idx, value = m[1], int(m[2]), float(m[3])
            if idx >= len(xs):
                raise fail(lineno, f"bound on undeclared X_{idx}")
            if not math.isfinite(value):
                raise fail(lineno, f"bound {m[3]} is not finite")
            table = upper if op == "<=" else lower
            if idx in table:
                raise fail(lineno, f"second '{op}' bound on X_{idx}")
            table[idx] = value
        elif _OR_OPEN.fullmatch(line):
            if seen_or:
                raise fail(lineno, "second output assertion")
            seen_or, in_or = True, lineno
        elif m := _OR_ONE_LINE.fullmatch(line):
            if seen_or:
                raise fail(lineno, "second output assertion")
            seen_or = True
            clauses += [(int(a), int(b), lineno) for a, b in _CLAUSE.findall(m[1])]
        else:
            raise fail(lineno, f"unexpected line {line!r}")
    if in_or:
        raise fail(in_or, "'(assert (or' is never closed with '))'")
    if not xs:
        raise fail(0, "no input X_i is declared")
    if not ys:
        raise fail(0, "no output Y_j is declared")
    missing = [i for i in xs if i not in upper or i not in lower]
    if missing:
        raise fail(0, f"X_{missing[0]} lacks a '<=' or '>=' bound ({len(missing)} inputs do)")
    if not clauses:
        raise fail(0, "no output assertion '(assert (or (and (>= Y_j Y_label)) ...))'")
    label = clauses[0][1]
    targets: list[int] = []
    for target, lab, lineno in clauses:
        if lab != label:
            raise fail(lineno, f"clause compares with Y_{lab}, earlier clauses with Y_{label}")
        if target >= len(ys) or lab >= len(ys):
            raise fail(lineno, f"clause uses an undeclared output (only {len(ys)} declared)")
        if target == label or target in targets:
            raise fail(lineno, f"target Y_{target} repeated or equal to the label")
        targets.append(target)
    lo = np.array([lower[i] for i in xs], dtype=np.float64)
    hi = np.array([upper[i] for i in xs], dtype=np.float64)
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        raise fail(0, f"empty box: X_{int(bad[0])} has lower {lo[bad[0]]} > upper {hi[bad[0]]}")
    return Property(lo, hi, label, tuple(targets), len(ys))


def _check_output_spec(
    label: int, num_classes: int, targets: Sequence[int] | None
) -> tuple[int, ...]:
    if int(num_classes) != num_classes or num_classes < 2:
        raise InvalidArgument(f"num_classes={num_classes!r}; a property needs at least 2 classes")
    if not 0 <= label < num_classes:
        raise InvalidArgument(f"label={label!r} is not in [0, {num_classes}); pass a class index")
    if targets is None:
        return tuple(j for j in range(num_classes) if j != label)
    t = tuple(int(j) for j in targets)
    if not t or len(set(t)) != len(t) or label in t or not all(0 <= j < num_classes for j in t):
        raise InvalidArgument(
            f"targets={list(t)} for label {label} of {num_classes} classes; pass distinct class "
            "indices other than the label, or None for all of them"
        )
    return t


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename, so a
    reader (or a crash) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; other tools may need to read it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
