"""Interval bound propagation written here, independent of the verifiers under test.

Used to train certifiably robust host networks (it is differentiable) and to give clean
instances ground truth: an interval proof of robustness does not depend on auto_LiRPA, so a
bug in the library being tested cannot leak into the benchmark's labels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from vcheck.errors import InvalidArgument

# Elementwise monotone, or linear with non-negative weights: bounds map end to end.
_ORDER_PRESERVING = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Flatten, nn.AvgPool2d)


def interval_bounds(
    net: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound elementwise bounds of ``net`` over the box [lower, upper] (batched, NCHW or ND).

    Affine layers use the centre/radius form (mid through W, radius through |W|); monotone
    activations map the ends; average pooling and eval-mode BatchNorm are affine too.
    """
    lo, hi = lower, upper
    for layer in net:
        if isinstance(layer, nn.Linear | nn.Conv2d):
            mid, rad = (hi + lo) / 2, (hi - lo) / 2
            if isinstance(layer, nn.Linear):
                mid = F.linear(mid, layer.weight, layer.bias)
                rad = F.linear(rad, layer.weight.abs())
            else:
                kw = {"stride": layer.stride, "padding": layer.padding}
                mid = F.conv2d(mid, layer.weight, layer.bias, **kw)
                rad = F.conv2d(rad, layer.weight.abs(), None, **kw)
            lo, hi = mid - rad, mid + rad
        elif isinstance(layer, _ORDER_PRESERVING):
            lo, hi = layer(lo), layer(hi)
        elif isinstance(layer, nn.BatchNorm2d) and not layer.training:
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            shift = layer.bias - layer.running_mean * scale
            s, b = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
            mid, rad = (hi + lo) / 2 * s + b, (hi - lo) / 2 * s.abs()
            lo, hi = mid - rad, mid + rad
        else:
            raise InvalidArgument(f"interval_bounds cannot bound layer {layer}")
    return lo, hi


def relaxation_gaps(net: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Sum over ReLUs of the triangle relaxation's largest gap -l u / (u - l), per box (N,).

    Interval bounds l, u of each ReLU's input; zero exactly when no ReLU can change sign in
    the box, i.e. the network is affine there and linear-relaxation bounds (CROWN) are exact
    up to float rounding. Differentiable: a training penalty that makes ReLUs stable.
    """
    total = torch.zeros(len(lower), dtype=lower.dtype)
    for i, layer in enumerate(net):
        if isinstance(layer, nn.ReLU):
            lo, hi = interval_bounds(net[:i], lower, upper)
            neg, pos = F.relu(-lo), F.relu(hi)
            total = total + (neg * pos / (neg + pos).clamp_min(1e-12)).flatten(1).sum(dim=1)
    return total


def margin_lower_bound(
    net: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor, label: torch.Tensor
) -> torch.Tensor:
    """Lower bound of min_{j != y} (f_y - f_j) over each box, from output intervals. (N,)"""
    lo, hi = interval_bounds(net, lower, upper)
    y_lo = lo.gather(1, label.view(-1, 1))
    others = hi.scatter(1, label.view(-1, 1), float("-inf"))
    return (y_lo - others).min(dim=1).values
