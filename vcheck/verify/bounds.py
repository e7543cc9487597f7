"""Certified output and margin bounds of a network over an input box, through auto_LiRPA.

Pure functions on a plain float32 CPU ``torch.nn.Module``: the verifiers of the soundness suite
and the certified-accuracy check read these and nothing else from auto_LiRPA. Bounds are of the
network in eval mode (what is released); the network's own mode, parameters and gradients are
left as they were.

Method names are vcheck's: ``"IBP"``, ``"CROWN"`` and ``"alpha-CROWN"`` (auto_LiRPA's
``CROWN-Optimized``, whose optimiser is deterministic on CPU).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from vcheck.errors import InvalidArgument, VcheckError
from vcheck.verify._lirpa_compat import import_auto_lirpa

Method = Literal["IBP", "CROWN", "alpha-CROWN"]
METHODS: tuple[str, ...] = ("IBP", "CROWN", "alpha-CROWN")
_LIRPA_METHOD = {"IBP": "IBP", "CROWN": "backward", "alpha-CROWN": "CROWN-Optimized"}
SUPPORTED_LAYERS = (
    "Linear, Conv2d, BatchNorm (eval), AvgPool2d, MaxPool2d, Flatten, Dropout, ReLU, Tanh, Sigmoid"
)

# net -> {input shape: (tensor identities and versions, BoundedModule)}. Weak keys: a cached
# BoundedModule does not keep its network alive (it shares the net's tensors, not the module).
_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[int, ...], tuple[Any, Any]]]
_CACHE = weakref.WeakKeyDictionary()


class UnsupportedNetworkError(VcheckError, NotImplementedError):
    """auto_LiRPA cannot bound this network (a layer it has no bound rule for)."""


def output_bounds(
    net: torch.nn.Module,
    lower: Tensor,
    upper: Tensor,
    method: Method,
    *,
    alpha_iterations: int = 20,
) -> tuple[Tensor, Tensor]:
    """Bounds ``(lb, ub)`` on every logit of ``net`` over the box ``[lower, upper]``.

    ``lower`` and ``upper`` are a batch of inputs (one box per row); ``lb`` and ``ub`` have the
    shape of ``net(lower)``. For a robustness verdict use :func:`margin_lower_bounds`: bounds on
    a difference of logits are much tighter than the difference of these bounds.
    """
    batch = _check_box(lower, upper)
    shape = _output(net, lower[:1]).shape[1:]
    # An explicit identity spec: alpha-CROWN keeps the last spec's shape on the cached module.
    spec = torch.eye(shape.numel()).expand(batch, -1, -1)
    lb, ub = _compute(net, lower, upper, method, spec, alpha_iterations, bound_upper=True)
    return lb.reshape(batch, *shape), ub.reshape(batch, *shape)


def margin_lower_bounds(
    net: torch.nn.Module,
    lower: Tensor,
    upper: Tensor,
    label: int | Tensor,
    method: Method,
    *,
    targets: Sequence[int] | None = None,
    alpha_iterations: int = 20,
    stop_when_proved: bool = False,
) -> Tensor:
    """Lower bounds of ``f_label - f_j`` over the box, shape ``(batch, n_targets)``.

    ``stop_when_proved``: alpha-CROWN stops optimising once every margin bound of a box is
    > 0 (auto_LiRPA keeps the best bounds seen, so the verdict "proved" is the same as after
    every iteration; only the bound values are looser).

    ``label`` is one class or one per row. ``j`` runs over ``targets`` (in that order) or, by
    default, over every class but the row's label in increasing order. The margins go into
    auto_LiRPA as its specification matrix C, so each is bounded as one linear function of the
    network (sound, and far tighter than subtracting logit bounds). The box is verified robust
    when every entry is > 0.
    """
    batch = _check_box(lower, upper)
    n_classes = _output(net, lower[:1]).reshape(1, -1).shape[1]
    labels = torch.as_tensor(label, dtype=torch.long).reshape(-1)
    if labels.numel() == 1:
        labels = labels.expand(batch)
    if labels.numel() != batch or ((labels < 0) | (labels >= n_classes)).any():
        raise InvalidArgument(
            f"label={label} must be one class in [0, {n_classes}) or one per row of the box"
        )
    if targets is None:  # row b: every class but labels[b], in increasing order
        others = torch.arange(n_classes - 1).expand(batch, -1)
        target_idx = others + (others >= labels[:, None]).long()
    else:
        target_idx = torch.as_tensor(list(targets), dtype=torch.long).reshape(1, -1)
        target_idx = target_idx.expand(batch, -1)
        bad = (target_idx < 0) | (target_idx >= n_classes) | (target_idx == labels[:, None])
        if target_idx.shape[1] == 0 or bad.any():
            raise InvalidArgument(
                f"targets={list(targets)} must be non-empty classes in [0, {n_classes}) other "
                "than the label; pass targets=None to use every other class"
            )
    n_targets = target_idx.shape[1]
    spec = torch.zeros(batch, n_targets, n_classes)
    spec.scatter_(2, labels[:, None, None].expand(-1, n_targets, 1), 1.0)
    spec.scatter_(2, target_idx[:, :, None], -1.0)
    lb, _ = _compute(
        net,
        lower,
        upper,
        method,
        spec,
        alpha_iterations,
        bound_upper=False,
        stop_when_proved=stop_when_proved,
    )
    return lb


def _check_box(lower: Tensor, upper: Tensor) -> int:
    if not (isinstance(lower, Tensor) and isinstance(upper, Tensor)):
        raise InvalidArgument("lower and upper must be torch tensors (a batch of inputs)")
    if lower.shape != upper.shape or lower.dim() < 2:
        raise InvalidArgument(
            f"lower {tuple(lower.shape)} and upper {tuple(upper.shape)} must share one shape "
            "(batch, *input_shape); add a batch dimension with x[None]"
        )
    if lower.dtype != torch.float32 or upper.dtype != torch.float32:
        raise InvalidArgument(f"box dtype={lower.dtype}/{upper.dtype}; pass float32 tensors")
    if not (torch.isfinite(lower).all() and torch.isfinite(upper).all()):
        raise InvalidArgument("the box has NaN or infinite entries; pass finite bounds")
    if (lower > upper).any():
        raise InvalidArgument("lower > upper somewhere in the box; swap or clamp the bounds")
    return lower.shape[0]


def _output(net: torch.nn.Module, x: Tensor) -> Tensor:
    if not isinstance(net, torch.nn.Module):
        raise InvalidArgument(f"net is a {type(net).__name__}; pass a torch.nn.Module")
    if any(
        (t.is_floating_point() and t.dtype != torch.float32) or t.device.type != "cpu"
        for t in _tensors(net)
    ):
        raise InvalidArgument("net must be float32 on CPU; call net.float().cpu() first")
    try:
        with torch.no_grad(), _untouched(net):
            out = net(x)
    except RuntimeError as exc:
        raise InvalidArgument(
            f"the box's input shape {tuple(x.shape[1:])} does not fit {type(net).__name__} "
            f"({_one_line(exc)}); pass boxes shaped (batch, *the net's input shape)"
        ) from exc
    if not isinstance(out, Tensor):
        raise UnsupportedNetworkError(
            f"{type(net).__name__} returns a {type(out).__name__}; bounds need a network whose "
            "forward returns one logits tensor"
        )
    return out


def _compute(
    net: torch.nn.Module,
    lower: Tensor,
    upper: Tensor,
    method: str,
    spec: Tensor,
    alpha_iterations: int,
    *,
    bound_upper: bool,
    stop_when_proved: bool = False,
) -> tuple[Tensor, Tensor | None]:
    if method not in _LIRPA_METHOD:
        raise InvalidArgument(f"method={method!r}; expected one of {', '.join(METHODS)}")
    if alpha_iterations < 1:
        raise InvalidArgument(f"alpha_iterations={alpha_iterations}; expected >= 1")
    # IBP carries no linear coefficients: a batch goes through at once. CROWN goes box by box:
    # batches were measured no faster on CPU (alpha-CROWN slower, and a batch shares the
    # optimiser's steps, which changed a verdict of the shipped benchmark).
    rows = [slice(None)] if method == "IBP" else [slice(i, i + 1) for i in range(len(lower))]
    parts = [
        _compute_box(
            net,
            lower[r],
            upper[r],
            method,
            spec[r],
            alpha_iterations,
            bound_upper,
            stop_when_proved,
        )
        for r in rows
    ]
    lb = torch.cat([lb for lb, _ in parts])
    return lb, torch.cat([ub for _, ub in parts]) if bound_upper else None


def _compute_box(
    net: torch.nn.Module,
    lower: Tensor,
    upper: Tensor,
    method: str,
    spec: Tensor,
    alpha_iterations: int,
    bound_upper: bool,
    stop_when_proved: bool = False,
) -> tuple[Tensor, Tensor | None]:
    lirpa = import_auto_lirpa()
    module = _bounded_module(net, tuple(lower.shape))
    stop = _all_positive if stop_when_proved else _never
    module.set_bound_opts(
        {"optimize_bound_args": {"iteration": alpha_iterations, "stop_criterion_func": stop}}
    )
    box = lirpa.PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper)
    x = lirpa.BoundedTensor((lower + upper) / 2, box)
    # alpha-CROWN optimises its relaxation slopes by gradient descent; the module is in eval
    # mode, so its (shared) parameters take no gradient.
    grad_mode = torch.enable_grad() if method == "alpha-CROWN" else torch.no_grad()
    if method == "alpha-CROWN" and _smooth_nodes(module):
        _precheck_smooth_relaxations(net, module, x, spec)
    try:
        with grad_mode, _untouched(net), _quiet_lirpa():
            lb, ub = module.compute_bounds(
                x=(x,), C=spec, method=_LIRPA_METHOD[method], bound_upper=bound_upper
            )
    except Exception as exc:
        fix = "use method='IBP' or" if method != "IBP" else "use"
        raise UnsupportedNetworkError(
            f"auto_LiRPA 0.3 cannot compute {method} bounds for {type(net).__name__} "
            f"({_one_line(exc)}); {fix} layers among: {SUPPORTED_LAYERS}"
        ) from exc
    if method != "IBP":
        _check_smooth_relaxations(module, method)
    return lb.detach(), None if ub is None else ub.detach()


def _all_positive(lb: Tensor) -> Tensor:
    """alpha-CROWN's stop criterion: every margin bound proved (strictly, as the verdict)."""
    return (lb > 0).all()


def _never(lb: Tensor) -> bool:
    """auto_LiRPA's default stop criterion: run every iteration."""
    return False


def _smooth_nodes(module: Any) -> list[Any]:
    """The Sigmoid/Tanh nodes of a BoundedModule (the ones with a relaxation range)."""
    return [n for n in module._modules.values() if getattr(n, "x_limit", None) is not None]


def _precheck_smooth_relaxations(net: torch.nn.Module, module: Any, x: Any, spec: Tensor) -> None:
    """The range guard on CROWN's intermediate bounds, before any alpha-CROWN optimisation.

    alpha-CROWN starts from CROWN's bounds and only tightens them, so on the shipped sigmoid
    and tanh networks a box CROWN refuses is refused by alpha-CROWN too, after seconds of
    optimisation; checking first skips that work (tests compare the verdicts). A box that
    passes here is still checked on alpha-CROWN's own bounds afterwards.
    """
    try:
        with torch.no_grad(), _untouched(net), _quiet_lirpa():
            module.compute_bounds(x=(x,), C=spec, method="backward", bound_upper=False)
    except Exception:  # let the alpha-CROWN call below report what auto_LiRPA cannot do
        return
    _check_smooth_relaxations(module, "alpha-CROWN")


def _check_smooth_relaxations(module: Any, method: str) -> None:
    """Refuse CROWN bounds that auto_LiRPA 0.3 built from clipped Sigmoid/Tanh inputs.

    Its relaxation clamps each pre-activation interval to [-x_limit, x_limit] (500) and draws
    the bounding lines on the clamped interval; a line is then no bound outside it, so a
    neuron whose real interval reaches past 500 can make the result unsound. vcheck's own
    soundness benchmark found this (alpha-CROWN "proved" planted counterexamples of its
    sigmoid network, whose steep units reach 1e4); IBP is unaffected and still available.
    """
    for node in module._modules.values():
        limit = getattr(node, "x_limit", None)
        if limit is None or not node.inputs:
            continue
        pre = node.inputs[0]
        reach = max(float(t.abs().max()) for t in (pre.lower, pre.upper) if isinstance(t, Tensor))
        if reach > limit:
            raise UnsupportedNetworkError(
                f"{method} bounds refused: a {type(node).__name__[5:]} input interval reaches "
                f"{reach:.3g}, past auto_LiRPA 0.3's relaxation range +-{limit:g}, where its "
                "bounds are unsound; use method='IBP' for this network"
            )


def _bounded_module(net: torch.nn.Module, shape: tuple[int, ...]) -> Any:
    """The cached BoundedModule for (net, input shape), rebuilt if any tensor of net changed.

    ``shape`` is a batch's shape; the module is built for one input and serves every batch
    size. (One module per batch size thrashed: each build writes the net's tensors once, which
    invalidated the modules of the other sizes, so branch and bound rebuilt one per round.)
    """
    per_net = _CACHE.setdefault(net, {})
    shape = (1, *shape[1:])
    cached = per_net.get(shape)
    if cached is not None and cached[0] == _state(net):
        return cached[1]
    lirpa = import_auto_lirpa()
    with _untouched(net), _quiet_lirpa() as records:
        try:
            # Dense alpha: 0.3's sparse-spec alpha breaks alpha-CROWN (AssertionError) on a
            # layer with no unstable neuron, which is common on the small boxes verified here.
            # Dense features too: 0.3 keeps sparse-feature alpha indices when it falls back to
            # full alpha (> 90% unstable; reset only under verbosity), a shape mismatch. Dense
            # intermediate bounds: sparse ones let alpha-CROWN's iterations need slopes its
            # init pass never made (KeyError), and make CROWN depend on earlier calls' alphas.
            opts = {
                "sparse_spec_alpha": False,
                "sparse_features_alpha": False,
                "sparse_intermediate_bounds": False,
            }
            module = lirpa.BoundedModule(net, torch.zeros(shape), bound_opts=opts, device="cpu")
        except Exception as exc:
            ops = sorted({_op_name(r.args[0]) for r in records if r.args and _op_name(r.args[0])})
            what = f"unsupported operations {', '.join(ops)}" if ops else _one_line(exc)
            raise UnsupportedNetworkError(
                f"auto_LiRPA 0.3 cannot bound {type(net).__name__}: {what}; "
                f"use layers among: {SUPPORTED_LAYERS}"
            ) from exc
    module.eval()  # its nodes default to training: Dropout would drop, unlike the released net
    per_net[shape] = (_state(net), module)  # after the build, which writes the tensors once
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _op_name(node: object) -> str:
    """'aten::ATen(scaled_dot_product_attention)' from auto_LiRPA's logged graph node."""
    op, attr = getattr(node, "op", ""), getattr(node, "attr", None)
    operator = attr.get("operator") if isinstance(attr, dict) else None
    return f"{op}({operator})" if op and operator else str(op)


def _tensors(net: torch.nn.Module) -> Iterator[Tensor]:
    yield from net.parameters()
    yield from net.buffers()


def _state(net: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    # In-place updates (optimiser steps, load_state_dict) bump _version; new tensors move.
    return tuple((t.data_ptr(), t._version) for t in _tensors(net))


@contextlib.contextmanager
def _untouched(net: torch.nn.Module) -> Iterator[None]:
    """Run ``net`` in eval mode, then restore every module's mode and every requires_grad.

    auto_LiRPA's BoundParams.forward calls ``requires_grad_(self.training)`` on the parameters
    it shares with ``net``: a frozen layer would be unfrozen, a trainable one frozen.
    """
    modes = [(m, m.training) for m in net.modules()]
    flags = [(p, p.requires_grad) for p in net.parameters()]
    net.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def _quiet_lirpa() -> Iterator[list[logging.LogRecord]]:
    """Collect what auto_LiRPA logs, prints (to stdout) and warns instead of showing it."""
    logger = logging.getLogger("auto_LiRPA")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True):
            yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
