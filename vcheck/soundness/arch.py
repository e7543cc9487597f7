"""Plain sequential architectures as JSON-able specs, so benchmark networks can be rebuilt
from ``model.pt`` without pickling code.

A spec is a list of layer dicts, e.g. ``[{"type": "flatten"}, {"type": "linear", "in": 10,
"out": 64}, {"type": "relu"}, ...]``. Supported: linear, conv (stride/padding), relu, tanh,
sigmoid, flatten, avgpool, batchnorm2d.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vcheck.errors import InvalidArgument


def build(spec: list[dict[str, Any]]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for layer in spec:
        kind = layer["type"]
        if kind == "linear":
            layers.append(nn.Linear(layer["in"], layer["out"]))
        elif kind == "conv":
            layers.append(
                nn.Conv2d(
                    layer["in"],
                    layer["out"],
                    layer["kernel"],
                    stride=layer.get("stride", 1),
                    padding=layer.get("padding", 0),
                )
            )
        elif kind == "avgpool":
            layers.append(nn.AvgPool2d(layer["kernel"], stride=layer.get("stride")))
        elif kind == "batchnorm2d":
            layers.append(nn.BatchNorm2d(layer["channels"]))
        elif kind in _PARAMETERLESS:
            layers.append(_PARAMETERLESS[kind]())
        else:
            raise InvalidArgument(f"layer type {kind!r} is not supported in a benchmark spec")
    return nn.Sequential(*layers)


def spec_of(net: nn.Sequential) -> list[dict[str, Any]]:
    """The spec that :func:`build` turns back into an equal-shaped ``net``."""
    spec: list[dict[str, Any]] = []
    for m in net:
        if isinstance(m, nn.Linear):
            spec.append({"type": "linear", "in": m.in_features, "out": m.out_features})
        elif isinstance(m, nn.Conv2d):
            spec.append(
                {
                    "type": "conv",
                    "in": m.in_channels,
                    "out": m.out_channels,
                    "kernel": m.kernel_size[0],
                    "stride": m.stride[0],
                    "padding": m.padding[0],
                }
            )
        elif isinstance(m, nn.AvgPool2d):
            spec.append({"type": "avgpool", "kernel": m.kernel_size, "stride": m.stride})
        elif isinstance(m, nn.BatchNorm2d):
            spec.append({"type": "batchnorm2d", "channels": m.num_features})
        elif isinstance(m, nn.Flatten):
            spec.append({"type": "flatten"})
        else:
            name = next((k for k, v in _PARAMETERLESS.items() if isinstance(m, v)), None)
            if name is None:
                raise InvalidArgument(f"layer {m} cannot be written to a benchmark spec")
            spec.append({"type": name})
    return spec


_PARAMETERLESS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "flatten": nn.Flatten,
}
