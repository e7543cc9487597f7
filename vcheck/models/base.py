"""What a suite sees of a model: :class:`ModelCfg` and :class:`ModelUnderTest`.

Images are float tensors in [0, 1], NCHW; normalisation lives inside the wrapped module, so
every epsilon, patch and corruption downstream is expressed in pixel space.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

OutputKind = Literal["softmax", "sigmoid"]


@dataclass(frozen=True)
class ModelCfg:
    """Static facts about a model that data loaders, attacks and verifiers read.

    Args:
        domain: which eval sets apply ("fashion_mnist", "imagenet").
        classes: class names, index order of the logits.
        input_size: (C, H, W) the module takes.
        mean, std: per-channel normalisation applied inside the wrapper.
        resize: shorter-side resize before the centre crop, for images read from files.
        interpolation: PIL-style interpolation name for that resize.
        output_kind: "softmax" (single label) or "sigmoid" (independent per-class scores).
    """

    domain: str
    classes: tuple[str, ...]
    input_size: tuple[int, int, int]
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: int | None = None
    interpolation: str = "bilinear"
    output_kind: OutputKind = "softmax"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocessing_key(self) -> str:
        """Stable description of everything between a stored image and the logits."""
        d = asdict(self)
        d.pop("classes")
        return json.dumps(d, sort_keys=True)


class Normalized(nn.Module):
    """Wraps a network so that it takes [0, 1] pixels and normalises them itself."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def state_dict_fingerprint(module: nn.Module) -> str:
    """sha256 over the state dict (names, dtypes, shapes and values), independent of file format."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelUnderTest:
    """A loaded model in eval mode, ready for inference on [0, 1] NCHW images.

    ``module`` includes normalisation; ``fingerprint`` is the sha256 of the underlying
    network's state dict, so the same weights give the same cache key whatever the file.
    """

    name: str
    module: nn.Module
    cfg: ModelCfg
    fingerprint: str
    source: str
    device: torch.device
    card: dict[str, Any] | None = None
    default_profile: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.classes

    @property
    def domain(self) -> str:
        return self.cfg.domain

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for reports."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "domain": self.cfg.domain,
            "output_kind": self.cfg.output_kind,
            "input_size": list(self.cfg.input_size),
            "num_classes": self.cfg.num_classes,
            "classes": list(self.cfg.classes),
            "parameters": sum(p.numel() for p in self.module.parameters()),
        }


def finalize(
    name: str,
    net: nn.Module,
    cfg: ModelCfg,
    source: str,
    device: torch.device,
    **kwargs: Any,
) -> ModelUnderTest:
    """Fingerprint ``net``, wrap it with normalisation, move it to ``device``, set eval mode."""
    fingerprint = state_dict_fingerprint(net)
    module = Normalized(net, cfg.mean, cfg.std).to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return ModelUnderTest(name, module, cfg, fingerprint, source, device, **kwargs)
