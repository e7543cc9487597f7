"""The verifier interface of the soundness suite: settings in the constructor, data in the call.

Every verifier is called the same way, ``verifier.verify(net, instance) -> Result``, whatever
runs underneath (auto_LiRPA, branch and bound, a user's Python object), so the suite compares
all of them against the benchmark's ground truth through one code path. Verdicts use the
VNN-COMP vocabulary of :mod:`vcheck.verify.external`: "sat" (a counterexample exists),
"unsat" (verified robust), "unknown", "timeout", "error".

Public names: :class:`Verifier`, :class:`PythonVerifier`, :func:`as_result`,
:func:`instance_property`, :func:`check_counterexample`, :func:`instance_box`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vcheck.errors import InvalidArgument
from vcheck.soundness.instances import Instance, SoundnessNetwork
from vcheck.soundness.vnnlib import Property
from vcheck.verify.external import VERDICTS, Result, validate_counterexample

__all__ = [
    "VERDICTS",
    "PythonVerifier",
    "Result",
    "Verifier",
    "as_module",
    "as_result",
    "check_counterexample",
    "default_targets",
    "eval_mode",
    "instance_box",
    "instance_property",
    "timed_verdict",
]


class Verifier(ABC):
    """A (possibly incomplete) verifier of one robustness instance at a time.

    Subclasses take their settings as constructor arguments and store them as public
    attributes of the same name: :meth:`settings` reads them back, so ``repr(verifier)`` reads
    like the constructor call and a report names the exact settings that produced a verdict.
    """

    #: Whether :meth:`verify` accepts ``targets=`` (the classes j whose ``f_j >= f_label`` is a
    #: violation; by default every class but the label). Wrappers that edit the specification
    #: need it.
    supports_targets: bool = False

    @abstractmethod
    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """The verdict on ``instance`` for ``net`` (a module or a benchmark network)."""

    def settings(self) -> dict[str, Any]:
        """Constructor settings, read from the public attributes (override if they differ)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @property
    def name(self) -> str:
        """The verifier as a report shows it: its class and settings."""
        return repr(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short(v)}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


class PythonVerifier(Verifier):
    """Any object with ``verify(instance)`` or ``verify(net, instance)`` as a :class:`Verifier`.

    The object may return a verdict string or a :class:`Result`. Its answer is checked
    exactly: only the five lower-case verdict words count, so a stray ``"SAT"``, ``"unsat\\n"``,
    ``True`` or ``None`` becomes "error" with the reason instead of being read generously
    (SoundnessBench's substring match scored "unsat" as "sat"). An exception raised by the
    object is that verifier crashing: "error" with the exception, like an external
    verifier's non-zero exit.
    """

    def __init__(self, obj: Any) -> None:
        method = getattr(obj, "verify", None)
        if not callable(method):
            raise InvalidArgument(
                f"obj={obj!r} has no verify method; pass an object with verify(instance) or "
                "verify(net, instance)"
            )
        self.obj = obj
        self._takes_net = _positional_count(method) >= 2

    def verify(self, net: nn.Module | SoundnessNetwork, instance: Instance) -> Result:
        """Call the object and check what it returned."""
        start = time.perf_counter()
        try:
            out = self.obj.verify(net, instance) if self._takes_net else self.obj.verify(instance)
        except Exception as exc:  # the verifier under test crashed: its verdict is "error"
            return Result(
                "error",
                seconds=time.perf_counter() - start,
                reason=f"{type(self.obj).__name__}.verify raised {type(exc).__name__}: {exc}",
            )
        result = as_result(out, seconds=time.perf_counter() - start)
        # Only vcheck's own verifiers refuse by design; anyone else's "error" is unanswered.
        return dataclasses.replace(result, refused=False) if result.refused else result


def _positional_count(method: Any) -> int:
    """How many positional arguments a bound ``verify`` takes (2 for ``verify(net, inst)``)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the documented form
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in kinds for p in params)


def as_result(value: Any, *, seconds: float = 0.0) -> Result:
    """``value`` (a verdict string or a Result) as a Result whose verdict is exactly valid.

    Anything else, or a Result whose verdict is not one of :data:`VERDICTS`, gives "error"
    with the reason. ``seconds`` fills in a Result that did not time itself.
    """
    if isinstance(value, str):
        if value in VERDICTS:
            return Result(value, seconds=seconds, raw=value)  # type: ignore[arg-type]
        return Result(
            "error",
            seconds=seconds,
            raw=value,
            reason=f"returned {value[:80]!r}; expected exactly one of {', '.join(VERDICTS)}",
        )
    if isinstance(value, Result):
        if not (isinstance(value.verdict, str) and value.verdict in VERDICTS):
            return Result(
                "error",
                x=value.x,
                y=value.y,
                seconds=value.seconds or seconds,
                raw=value.raw,
                reason=f"returned a Result with verdict {value.verdict!r}; expected exactly "
                f"one of {', '.join(VERDICTS)}",
            )
        if value.seconds or not seconds:
            return value
        return Result(value.verdict, value.x, value.y, seconds, value.raw, value.reason)
    return Result(
        "error",
        seconds=seconds,
        reason=f"returned a {type(value).__name__} ({value!r:.80}); expected a verdict string "
        "or a vcheck.verify.external.Result",
    )


def as_module(net: nn.Module | SoundnessNetwork) -> nn.Module:
    """The torch module of a benchmark network (or the module itself)."""
    module = net.net if isinstance(net, SoundnessNetwork) else net
    if not isinstance(module, nn.Module):
        raise InvalidArgument(
            f"net is a {type(net).__name__}; pass a torch.nn.Module or a SoundnessNetwork"
        )
    return module


def instance_box(instance: Instance) -> tuple[torch.Tensor, torch.Tensor]:
    """The instance's box as float32 tensors with a batch dimension: ``(1, *input_shape)``."""
    lower = torch.as_tensor(np.asarray(instance.lower, dtype=np.float32))[None]
    upper = torch.as_tensor(np.asarray(instance.upper, dtype=np.float32))[None]
    return lower, upper


def default_targets(label: int, num_classes: int) -> tuple[int, ...]:
    """Every class but ``label``: the robustness specification's targets."""
    return tuple(j for j in range(num_classes) if j != label)


def instance_property(
    instance: Instance, num_classes: int, targets: Sequence[int] | None = None
) -> Property:
    """The VNN-LIB property of ``instance`` (what its .vnnlib file states), without a file."""
    lower = np.asarray(instance.lower, dtype=np.float32).astype(np.float64).ravel()
    upper = np.asarray(instance.upper, dtype=np.float32).astype(np.float64).ravel()
    chosen = default_targets(instance.label, num_classes) if targets is None else tuple(targets)
    return Property(lower, upper, instance.label, chosen, num_classes)


def check_counterexample(
    net: nn.Module | SoundnessNetwork, instance: Instance, result: Result, num_classes: int = 2
) -> str | None:
    """None if ``result`` is a "sat" whose x is a genuine counterexample of ``instance``, else
    why not (no x, outside the box, not misclassified in float64)."""
    if result.verdict != "sat":
        return f"verdict {result.verdict!r} carries no counterexample"
    if result.x is None:
        return "a 'sat' without a counterexample: nothing to check"
    shape = tuple(np.asarray(instance.center).shape)
    if isinstance(net, SoundnessNetwork):
        num_classes = net.num_classes
    prop = instance_property(instance, num_classes)
    return validate_counterexample(as_module(net), prop, result.x, input_shape=shape)


def elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return time.perf_counter() - start


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` validated: None (no limit) or a positive number of seconds."""
    if timeout is None:
        return None
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise InvalidArgument(f"timeout={timeout!r}; pass a positive number of seconds or None")
    return float(timeout)


def timed_verdict(
    proved: bool, seconds: float, timeout: float | None, raw: str, bound: float | None = None
) -> Result:
    """ "unsat" or "unknown" from bounds that took ``seconds``, under a soft ``timeout``.

    Past the timeout an unproved property is "timeout"; a proved one stays "unsat" with
    ``late: N s`` in ``raw``, so a wrong proof that arrived late still fails the suite.
    """
    late = timeout is not None and seconds > timeout
    if late and not proved:
        return Result(
            "timeout",
            seconds=seconds,
            reason=f"bounds took {seconds:.2f} s (timeout {timeout:g} s)",
            bound=bound,
        )
    if late:
        raw = f"{raw}; late: {seconds:.2f} s (timeout {timeout:g} s)"
    return Result("unsat" if proved else "unknown", seconds=seconds, raw=raw, bound=bound)


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode (what is released and verified), every module's mode restored."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield net
    finally:
        for m, training in modes:
            m.training = training
