"""Soundness instances: an L-inf box around a centre, a label, and (for counterexample
instances) the planted x* that proves the property false.

Verdict vocabulary follows VNN-COMP, where the property file states the *violation*:
"sat" = a counterexample exists (not robust), "unsat" = verified robust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import nn

Kind = Literal["counterexample", "clean"]
GroundTruth = Literal["sat", "unsat", "unknown"]


@dataclass(frozen=True)
class Instance:
    """One robustness property: is ``label`` the argmax everywhere in [lower, upper]?

    ``x_star`` is stored for counterexample instances (never inferred from position);
    ``hidden_from`` lists the attacks that failed to find it, ``found_by`` those that did.
    """

    id: str
    kind: Kind
    center: np.ndarray  # float32, the network's input shape without batch
    eps: float
    label: int
    lower: np.ndarray  # float32, same shape as center
    upper: np.ndarray
    target: int | None = None
    x_star: np.ndarray | None = None
    ground_truth: GroundTruth = "unknown"
    ground_truth_method: str | None = None
    hidden_from: tuple[str, ...] = ()
    found_by: tuple[str, ...] = ()
    generator: str = ""

    def to_json(self) -> dict[str, Any]:
        def arr(a: np.ndarray | None) -> list | None:
            return None if a is None else [float(v) for v in np.asarray(a, np.float32).ravel()]

        return {
            "id": self.id,
            "kind": self.kind,
            "eps": self.eps,
            "label": self.label,
            "target": self.target,
            "shape": list(self.center.shape),
            "center": arr(self.center),
            "lower": arr(self.lower),
            "upper": arr(self.upper),
            "x_star": arr(self.x_star),
            "ground_truth": self.ground_truth,
            "ground_truth_method": self.ground_truth_method,
            "hidden_from": list(self.hidden_from),
            "found_by": list(self.found_by),
            "generator": self.generator,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Instance:
        shape = tuple(d["shape"])

        def arr(v: list | None) -> np.ndarray | None:
            return None if v is None else np.asarray(v, dtype=np.float32).reshape(shape)

        return cls(
            id=d["id"],
            kind=d["kind"],
            center=arr(d["center"]),
            eps=float(d["eps"]),
            label=int(d["label"]),
            lower=arr(d["lower"]),
            upper=arr(d["upper"]),
            target=d["target"],
            x_star=arr(d["x_star"]),
            ground_truth=d["ground_truth"],
            ground_truth_method=d.get("ground_truth_method"),
            hidden_from=tuple(d["hidden_from"]),
            found_by=tuple(d["found_by"]),
            generator=d["generator"],
        )


@dataclass
class SoundnessNetwork:
    """A network under which some properties are planted false, with its instances."""

    name: str
    net: nn.Sequential
    input_shape: tuple[int, ...]
    num_classes: int
    instances: list[Instance]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
