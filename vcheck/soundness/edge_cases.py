"""A hand-built network whose properties fail only at a tie or only for one target class.

The needle networks cannot show two of the spec's synthetic bugs: no margin bound there is
exactly 0 (so comparing with ">= 0" changes nothing) and with two classes dropping the only
target is vacuous. This network, with integer weights so that every tie is exact in float32,
float64 and ONNX Runtime, has both, as clean instances with known counterexamples:

    u = (relu(x), relu(-x)),   f = (1 + u_0, 1 + u_1, 1 - u_1)

- ``tie``: label 0 on [0, 1]. f_0 - f_j >= 0 with equality at x = 0, where all three classes
  tie: a counterexample of "Y_j >= Y_0", and a margin lower bound of exactly 0.
- ``class_1_only``: label 0 on [-1, -1/2]. f_1 > f_0 everywhere (not robust), but
  f_0 - f_2 = relu(-x) >= 1/2: robust against class 2, so a specification that leaves class 1
  out is wrongly proved.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vcheck.soundness.instances import Instance, SoundnessNetwork

NAME = "edge_ties_3class"
GENERATOR = "hand-built (vcheck.soundness.edge_cases)"


def build() -> SoundnessNetwork:
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        net[2].bias.fill_(1.0)
    net.eval().requires_grad_(False)
    instances = [
        _instance("tie", 0.0, 1.0, witness=0.0, target=1, why="exact tie of all classes at x = 0"),
        _instance(
            "class_1_only", -1.0, -0.5, witness=-0.75, target=1, why="f_1 > f_0 on the whole box"
        ),
    ]
    settings = {"construction": __doc__.split("\n\n")[2].strip(), "exact_arithmetic": True}
    return SoundnessNetwork(NAME, net, (1,), 3, instances, settings, 0.0)


def _instance(
    name: str, lower: float, upper: float, *, witness: float, target: int, why: str
) -> Instance:
    arr = lambda v: np.array([v], np.float32)  # noqa: E731 - a one-line local helper
    return Instance(
        id=f"clean_{name}",
        kind="clean",
        center=arr((lower + upper) / 2),
        eps=(upper - lower) / 2,
        label=0,
        lower=arr(lower),
        upper=arr(upper),
        target=target,
        x_star=arr(witness),
        ground_truth="sat",
        ground_truth_method=f"witness x = {witness}: {why} (integer weights, exact in floats)",
        generator=GENERATOR,
    )
