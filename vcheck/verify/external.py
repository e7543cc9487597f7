"""External (VNN-COMP style) verifiers: run a command per instance, read its verdict exactly.

A verifier is a command template such as
``my_verifier --onnx {onnx} --spec {vnnlib} --timeout {timeout} --out {result}``; it must write
its verdict to the ``{result}`` file: first line one of ``sat`` (a counterexample exists,
optionally followed by ``((X_0 v) ... (Y_0 v) ...)``), ``unsat`` (verified), ``timeout``,
``unknown``, ``error``. VNN-COMP's older ``violated`` / ``holds`` are read as sat / unsat.

Parsing is exact on purpose: SoundnessBench matched substrings, so "unsat" contains "sat" and
a verifier claiming robustness was scored as having found a counterexample. A counterexample a
verifier returns proves nothing until :func:`validate_counterexample` has checked it against the
box and the network; a "sat" with an invalid one is a verifier bug as well.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import re
import shlex
import shutil
import signal
import string
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vcheck.errors import CorruptArtefactError, InvalidArgument, MissingArtefactError
from vcheck.soundness.instances import SoundnessNetwork
from vcheck.soundness.vnncomp import InstanceFiles
from vcheck.soundness.vnnlib import Property

Verdict = Literal["sat", "unsat", "timeout", "unknown", "error"]
VERDICTS: tuple[str, ...] = ("sat", "unsat", "timeout", "unknown", "error")
_WORDS: dict[str, Verdict] = {
    "sat": "sat",
    "unsat": "unsat",
    "timeout": "timeout",
    "unknown": "unknown",
    "error": "error",
    "violated": "sat",  # VNN-COMP 2021
    "holds": "unsat",
}
PLACEHOLDERS: tuple[str, ...] = ("onnx", "vnnlib", "timeout", "result")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ASSIGNMENT = re.compile(rf"\s*\(\s*([XY])_(\d+)\s+({_NUM})\s*\)\s*")
_SHELL_CHARS = set("|&;<>()$`")


@dataclass(frozen=True, eq=False)
class Result:
    """A verifier's answer on one instance.

    ``x`` / ``y``: the counterexample's inputs (flattened) and outputs, when a "sat" came with
    one. ``reason``: why the verdict is "error", or what is wrong with a "sat"'s counterexample
    block (the verdict then stays "sat": claiming one is still the verifier's answer).
    ``refused``: the "error" is a built-in verifier declining a network it cannot bound
    soundly (reported as a refusal), not a crash. ``bound``: a bound method's lower bound of
    the worst margin over the box (built-in IBP, CROWN and alpha-CROWN), which a sound one
    keeps at or below the margin at any point of the box, a planted x* included.
    """

    verdict: Verdict
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    seconds: float = 0.0
    raw: str = ""
    reason: str = ""
    refused: bool = False  # an "error" by design: a built-in verifier declined the network
    bound: float | None = None


def parse_result(text: str) -> Result:
    """Read a VNN-COMP result text: the first non-empty line, stripped and lower-cased, must
    be exactly a verdict word; anything else is an "error" with the reason."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return Result("error", raw=text, reason=f"the result is empty; expected one of {_WORDS_S}")
    word = lines[first].strip().lower()
    verdict = _WORDS.get(word)
    if verdict is None:
        return Result(
            "error",
            raw=text,
            reason=f"first line {lines[first].strip()[:80]!r} is not one of {_WORDS_S}",
        )
    rest = "\n".join(lines[first + 1 :]).strip()
    if verdict != "sat" or not rest:
        return Result(verdict, raw=text)
    try:
        x, y = _parse_counterexample(rest)
    except ValueError as e:
        return Result("sat", raw=text, reason=f"counterexample block unreadable: {e}")
    return Result("sat", x=x, y=y, raw=text)


_WORDS_S = ", ".join(_WORDS)


def _parse_counterexample(block: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``((X_0 v) (X_1 v) ... (Y_0 v) ...)``, whitespace and line breaks anywhere."""
    if not (block.startswith("(") and block.endswith(")")):
        raise ValueError("expected '((X_0 value) ... (Y_0 value) ...)'")
    inner = block[1:-1]
    values: dict[str, dict[int, float]] = {"X": {}, "Y": {}}
    pos = 0
    while pos < len(inner):
        m = _ASSIGNMENT.match(inner, pos)
        if m is None:
            raise ValueError(f"unexpected text {inner[pos : pos + 30].strip()!r}")
        table = values[m[1]]
        idx = int(m[2])
        if idx in table:
            raise ValueError(f"{m[1]}_{idx} given twice")
        table[idx] = float(m[3])
        pos = m.end()
    arrays: dict[str, np.ndarray | None] = {}
    for name, table in values.items():
        if table and sorted(table) != list(range(len(table))):
            gap = next(i for i in range(len(table) + 1) if i not in table)
            raise ValueError(f"{name}_{gap} is missing")
        arrays[name] = np.array([table[i] for i in range(len(table))]) if table else None
    if arrays["X"] is None:
        raise ValueError("no X_i values")
    return arrays["X"], arrays["Y"]


class _Formatter(string.Formatter):
    """str.format, except a float without a format spec prints as ``60`` / ``1.5``."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, float) and not format_spec:
            return f"{value:g}"
        return super().format_field(value, format_spec)


class ExternalVerifier:
    """A VNN-COMP style verifier run as a subprocess, one instance per call.

    ``command`` may use ``{onnx}``, ``{vnnlib}``, ``{timeout}`` (seconds; a format spec such as
    ``{timeout:.0f}`` works) and must use ``{result}``. It runs without a shell (split with
    shlex) unless it contains shell syntax (pipes, redirections, ``;``, ``&&``, ``$``), in which
    case the substituted paths are shell-quoted. The process group is killed ``grace`` seconds
    after ``timeout``, which gives "timeout".
    """

    def __init__(self, command: str, *, timeout: float, grace: float = 2.0) -> None:
        if not isinstance(command, str) or not command.strip():
            raise InvalidArgument(f"command={command!r}; pass the verifier's command line")
        for name, v in (("timeout", timeout), ("grace", grace)):
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InvalidArgument(f"{name}={v!r}; pass a non-negative number of seconds")
        if timeout <= 0:
            raise InvalidArgument(f"timeout={timeout!r}; pass a positive number of seconds")
        self.command = command
        self.timeout = float(timeout)
        self.grace = float(grace)
        _check_placeholders(command)
        try:
            lexer = shlex.shlex(command, posix=True, punctuation_chars="|&;<>()")
            lexer.whitespace_split = True
            tokens = list(lexer)
            self._argv = shlex.split(command)
        except ValueError as e:
            raise InvalidArgument(f"cannot split command {command!r} ({e}); fix its quoting") from e
        self.shell = any(set(t) <= _SHELL_CHARS for t in tokens) or bool(set("$`") & set(command))

    def __repr__(self) -> str:
        return (
            f"ExternalVerifier(command={self.command!r}, timeout={self.timeout:g}, "
            f"grace={self.grace:g}, shell={self.shell})"
        )

    def argv(self, onnx: str, vnnlib: str, result: str) -> list[str]:
        """The command line run for these files (``["/bin/sh", "-c", ...]`` with a shell)."""
        fmt = _Formatter()
        if self.shell:
            q = shlex.quote
            line = fmt.format(
                self.command, onnx=q(onnx), vnnlib=q(vnnlib), result=q(result), timeout=self.timeout
            )
            return ["/bin/sh", "-c", line]
        values = {"onnx": onnx, "vnnlib": vnnlib, "result": result, "timeout": self.timeout}
        return [fmt.format(token, **values) for token in self._argv]

    def verify(self, files: InstanceFiles | tuple[Any, Any]) -> Result:
        """Run the verifier on one instance's (onnx, vnnlib) files.

        A result file wins over the exit status; without one, a non-zero exit is an "error"
        carrying stderr's last line. A command that cannot be started raises (a setup error
        must not pass as a stream of harmless "error" verdicts).
        """
        onnx, vnnlib = (files.onnx, files.vnnlib) if isinstance(files, InstanceFiles) else files
        for p in (onnx, vnnlib):
            if not Path(p).is_file():
                raise MissingArtefactError(f"{p}: not found; write the benchmark first")
        workdir = tempfile.mkdtemp(prefix="vcheck-verifier-")
        result_path = os.path.join(workdir, "result.txt")
        try:
            argv = self.argv(str(onnx), str(vnnlib), result_path)
            return self._run(argv, Path(result_path))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, argv: list[str], result_path: Path) -> Result:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, so children die with it
            )
        except OSError as e:
            raise InvalidArgument(
                f"cannot start verifier {argv[0]!r} ({e.strerror or e}); check the command's "
                "executable path"
            ) from e
        try:
            _, stderr = proc.communicate(timeout=self.timeout + self.grace)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            _reap(proc)
            seconds = time.monotonic() - start
            raw = _read_text(result_path)
            if raw.strip() and parse_result(raw).verdict == "unsat":
                # A computed "unsat" stays one: a late wrong proof must still fail the suite.
                late = f"late: {seconds:.1f} s (timeout {self.timeout:g} s)"
                return Result("unsat", seconds=seconds, raw=raw, reason=late)
            note = f"; its result file said {raw.strip()[:40]!r}" if raw.strip() else ""
            return Result(
                "timeout",
                seconds=seconds,
                raw=raw,
                reason=f"killed after {seconds:.1f} s (timeout {self.timeout:g} s){note}",
            )
        except BaseException:  # e.g. KeyboardInterrupt: leave no verifier running
            _kill_group(proc)
            _reap(proc)
            raise
        _kill_group(proc)  # stragglers it left behind in its group
        seconds = time.monotonic() - start
        text = _read_text(result_path)
        if text.strip():  # a blank file (created, never written) counts as no result
            r = parse_result(text)
            return Result(r.verdict, r.x, r.y, seconds=seconds, raw=r.raw, reason=r.reason)
        last = _last_line(stderr)
        if proc.returncode != 0:
            why = f"exit code {proc.returncode} and no result file"
            return Result("error", seconds=seconds, reason=f"{why}: {last}" if last else why)
        return Result(
            "error",
            seconds=seconds,
            reason="exited 0 but wrote no result file; make it write its verdict to {result}",
        )


def _check_placeholders(command: str) -> None:
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f is not None]
    except ValueError as e:
        raise InvalidArgument(
            f"command {command!r}: {e}; write literal braces as {{{{ and }}}}"
        ) from e
    allowed = " ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    for f in fields:
        if f not in PLACEHOLDERS:
            raise InvalidArgument(
                f"command {command!r}: unknown placeholder {{{f}}}; use only {allowed} "
                "(literal braces as {{ and }})"
            )
    if "result" not in fields:
        raise InvalidArgument(
            f"command {command!r} has no {{result}} placeholder; the verifier must write its "
            "verdict to that file, e.g. append '--result {result}'"
        )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group the verifier leads (it was started in a new session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:  # a child that left the group holds the pipes open
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _last_line(data: bytes | None) -> str:
    lines = [ln.strip() for ln in (data or b"").decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:300] if lines else ""


def validate_counterexample(
    net: torch.nn.Module | SoundnessNetwork,
    prop: Property,
    x: np.ndarray | Sequence[float],
    tol: float = 1e-6,
    *,
    input_shape: Sequence[int] | None = None,
) -> str | None:
    """None if ``x`` is a genuine counterexample to ``prop``, else the reason it is not.

    Genuine: inside the box with no tolerance (only a float32 rounding of the bounds is
    allowed, for verifiers that read the box in float32; vcheck's own files are exact), and the
    network, evaluated in float64 in eval mode, gives some target j with
    ``y_j >= y_label - tol``. ``tol`` covers a float32 verifier landing on the decision
    boundary only. ``x`` may be flat; its shape comes from a SoundnessNetwork, ``input_shape``
    or ``x`` itself.
    """
    module = net.net if isinstance(net, SoundnessNetwork) else net
    xs = np.asarray(x, dtype=np.float64)
    if input_shape is not None:
        shape = tuple(input_shape)
    elif isinstance(net, SoundnessNetwork):
        shape = tuple(net.input_shape)
    else:
        shape = xs.shape if xs.ndim > 1 else (xs.size,)
    flat = xs.ravel()
    if flat.size != prop.num_inputs or math.prod(shape) != flat.size:
        return (
            f"x has {flat.size} values; the property has {prop.num_inputs} inputs and the "
            f"network takes shape {shape}"
        )
    if not np.isfinite(flat).all():
        return "x has non-finite values"
    lo = np.minimum(prop.lower, prop.lower.astype(np.float32).astype(np.float64))
    hi = np.maximum(prop.upper, prop.upper.astype(np.float32).astype(np.float64))
    out = np.flatnonzero((flat < lo) | (flat > hi))
    if out.size:
        i = int(out[0])
        side = f"below the lower bound {lo[i]!r}" if flat[i] < lo[i] else f"above {hi[i]!r}"
        return f"x is outside the box: X_{i} = {flat[i]!r} is {side} ({out.size} inputs outside)"
    model = copy.deepcopy(module).double().eval()
    try:
        with torch.no_grad():
            y = model(torch.from_numpy(flat.reshape(1, *shape).copy())).numpy().ravel()
    except RuntimeError as e:
        raise InvalidArgument(
            f"the network rejects x of shape {shape} ({str(e).splitlines()[0]}); pass "
            "input_shape= or a SoundnessNetwork"
        ) from e
    if y.size != prop.num_classes:
        return f"the network gives {y.size} outputs, the property declares {prop.num_classes}"
    if not np.isfinite(y).all():
        return "the network's outputs at x are not finite"
    targets = list(prop.targets)
    margins = y[targets] - y[prop.label]
    best = int(np.argmax(margins))
    if margins[best] >= -tol:
        return None
    return (
        f"not misclassified: at x the label {prop.label} outscores every target (float64); the "
        f"closest, Y_{targets[best]}, trails by {-margins[best]:.3g} (tol {tol:g})"
    )


@dataclass(frozen=True)
class ResultRow:
    """One line of a VNN-COMP results CSV; ``verdict`` is ``result`` read exactly."""

    benchmark: str | None
    onnx: str
    vnnlib: str
    prepare_time: float
    result: str
    run_time: float
    verdict: Verdict


_COLUMNS_6 = ("benchmark", "onnx", "vnnlib", "prepare_time", "result", "run_time")


def read_results_csv(path: str | os.PathLike[str]) -> list[ResultRow]:
    """Rows of a VNN-COMP results CSV, in either layout: 6 columns (benchmark, onnx, vnnlib,
    prepare_time, result, run_time) or 5 (the same without benchmark). A header line naming
    those columns is skipped; anything else raises a CorruptArtefactError (a ValueError)
    naming the line."""
    path = Path(path)
    try:
        f = path.open(newline="", encoding="utf-8")
    except FileNotFoundError as e:
        raise MissingArtefactError(f"{path}: results file not found") from e
    rows: list[ResultRow] = []
    width: int | None = None
    with f:
        reader = csv.reader(f)
        try:
            for row in reader:
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                where = f"{path}:{reader.line_num}"
                if len(cells) not in (5, 6):
                    raise CorruptArtefactError(
                        f"{where}: {len(cells)} columns; expected 6 ({', '.join(_COLUMNS_6)}) "
                        "or 5 (the same without benchmark)"
                    )
                if (
                    width is None
                    and tuple(c.lower() for c in cells) == _COLUMNS_6[6 - len(cells) :]
                ):
                    width = len(cells)
                    continue
                if width is not None and len(cells) != width:
                    raise CorruptArtefactError(
                        f"{where}: {len(cells)} columns after lines of {width}; use one layout"
                    )
                width = len(cells)
                bench = cells[0] if len(cells) == 6 else None
                onnx, vnnlib, prep, result, run = cells[-5:]
                times = []
                for name, v in (("prepare_time", prep), ("run_time", run)):
                    try:
                        t = float(v)
                    except ValueError:
                        t = math.nan
                    if not math.isfinite(t):
                        raise CorruptArtefactError(f"{where}: {name} {v!r} is not a number")
                    times.append(t)
                verdict = _WORDS.get(result.lower(), "error")
                rows.append(ResultRow(bench, onnx, vnnlib, times[0], result, times[1], verdict))
        except UnicodeDecodeError as e:
            raise CorruptArtefactError(f"{path}: not UTF-8 text ({e})") from e
        except csv.Error as e:
            raise CorruptArtefactError(f"{path}:{reader.line_num}: not valid CSV ({e})") from e
    return rows
