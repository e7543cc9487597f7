"""What both generators share: SoundnessBench's synthetic data, the classifier grid, and
turning a finished network plus its hiding report into instances with ground truth."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from vcheck.errors import InvalidArgument
from vcheck.soundness.attacks import AttackOutcome
from vcheck.soundness.instances import Instance
from vcheck.soundness.intervals import margin_lower_bound

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
IBP_PROOF = "interval bound propagation (vcheck.soundness.intervals)"


def check_architecture(
    input_shape: tuple[int, ...], convs: tuple[int, ...], activation: str, pool: int
) -> None:
    """One-line errors for a grid entry that :func:`build_classifier` cannot build."""
    if bool(convs) != (len(input_shape) == 3):
        raise InvalidArgument(
            f"input_shape={input_shape} with convs={convs}: use (d,) for an MLP "
            "and (C, H, W) with at least one conv for a CNN"
        )
    if activation not in ACTIVATIONS:
        raise InvalidArgument(f"activation={activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if pool and (not convs or pool < 2):
        raise InvalidArgument(
            f"pool={pool}: average pooling needs a CNN and a kernel of at least 2"
        )


def build_classifier(
    input_shape: tuple[int, ...],
    convs: tuple[int, ...],
    hidden: tuple[int, ...],
    activation: str = "relu",
    pool: int = 0,
) -> nn.Sequential:
    """SoundnessBench's grid as plain layers: 3x3 stride-1 convs (+ optional average pooling),
    then dense layers, ending in 2 logits; one activation throughout."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    if convs:
        channels, height, width = input_shape
        for out in convs:
            layers += [nn.Conv2d(channels, out, 3, padding=1), act()]
            channels = out
        if pool:
            layers.append(nn.AvgPool2d(pool))
            height, width = height // pool, width // pool
        layers.append(nn.Flatten())
        features = channels * height * width
    else:
        features = input_shape[0]
    for width_ in hidden:
        layers += [nn.Linear(features, width_), act()]
        features = width_
    layers.append(nn.Linear(features, 2))
    return nn.Sequential(*layers)


def sample_centers(
    input_shape: tuple[int, ...],
    count: int,
    eps: float,
    data_range: float,
    min_distance: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``count`` centres uniform in [-data_range, data_range], rejection-sampled so that any
    two are more than ``min_distance`` * eps apart in L-inf (the spec asks for > 2; 3 also
    keeps every clean centre > 2 eps from every x*, which lies within eps of its x0)."""
    gap = min_distance * eps
    out: list[np.ndarray] = []
    for _ in range(200_000):
        c = rng.uniform(-data_range, data_range, size=input_shape).astype(np.float32)
        if all(np.abs(c - o).max() > gap for o in out):
            out.append(c)
            if len(out) == count:
                return np.stack(out)
    raise InvalidArgument(
        f"could not place {count} centres {min_distance} eps apart in "
        f"[-{data_range}, {data_range}]^{input_shape}; lower eps or the instance count"
    )


def assemble_instances(
    net: nn.Module,
    centers: torch.Tensor,
    labels: torch.Tensor,
    x_star: torch.Tensor,
    eps: float,
    report: Mapping[str, AttackOutcome],
    generator: str,
    keep: torch.Tensor | None = None,
) -> list[Instance]:
    """The first ``len(x_star)`` centres are counterexample instances, kept only if every
    attack of ``report`` missed them (SoundnessBench's rule) and ``keep`` (if given) is true
    for them; the rest are clean, with ground truth "sat" from an attack's witness, "unsat"
    from an interval proof, else "unknown"."""
    lower, upper = centers - eps, centers + eps
    with torch.no_grad():
        proved = margin_lower_bound(net, lower, upper, labels) > 0
    n_cex = len(x_star)
    instances = []
    for i in range(len(centers)):
        found_by = tuple(name for name, o in report.items() if bool(o.found[i]))
        common: dict[str, Any] = dict(
            center=centers[i].numpy(),
            eps=eps,
            label=int(labels[i]),
            lower=lower[i].numpy(),
            upper=upper[i].numpy(),
            hidden_from=tuple(name for name, o in report.items() if not bool(o.found[i])),
            found_by=found_by,
            generator=generator,
        )
        if i < n_cex:
            if found_by or (keep is not None and not bool(keep[i])):
                continue
            instances.append(
                Instance(
                    id=f"cex_{i:02d}",
                    kind="counterexample",
                    target=1 - int(labels[i]),
                    x_star=x_star[i].numpy(),
                    ground_truth="sat",
                    ground_truth_method="planted x*",
                    **common,
                )
            )
            continue
        truth, method = "unknown", None
        if found_by:
            truth, method = "sat", f"attack: {found_by[0]}"
        elif bool(proved[i]):
            truth, method = "unsat", IBP_PROOF
        instances.append(
            Instance(
                id=f"clean_{i - n_cex:02d}",
                kind="clean",
                ground_truth=truth,
                ground_truth_method=method,
                **common,
            )
        )
    return instances


def jsonable(obj: Any) -> Any:
    """Tuples to lists, recursively, so settings round-trip through JSON unchanged."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def dropped_counterexamples(
    report: Mapping[str, AttackOutcome], n_cex: int, keep: torch.Tensor | None = None
) -> dict[str, list[str]]:
    """For the manifest: each planted counterexample that was not kept, with the attacks that
    found it (empty where it was dropped for not being a counterexample at all)."""
    out = {}
    for i in range(n_cex):
        found = [name for name, o in report.items() if bool(o.found[i])]
        if found or (keep is not None and not bool(keep[i])):
            out[f"cex_{i:02d}"] = found
    return out
