"""torchvision classification models, resolved offline through torchvision's weights API.

Weights are looked for where torchvision's own downloader would put them
(``$TORCH_HOME/hub/checkpoints/<file name of weights.url>``); ``--weights PATH`` overrides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcheck.errors import CorruptArtefactError, MissingArtefactError
from vcheck.models.base import ModelCfg, file_sha256

# Names people type -> torchvision builder names.
ALIASES: dict[str, str] = {
    "convnext_t": "convnext_tiny",
    "convnext_s": "convnext_small",
    "convnext_b": "convnext_base",
    "convnext_l": "convnext_large",
    "rn18": "resnet18",
    "rn50": "resnet50",
    "vit_b16": "vit_b_16",
    "vit_l16": "vit_l_16",
    "effnet_b0": "efficientnet_b0",
    "mnv2": "mobilenet_v2",
    "mnv3_l": "mobilenet_v3_large",
}


def classification_models() -> list[str]:
    import torchvision  # imports torch._dynamo: only for torchvision models

    return list(torchvision.models.list_models(module=torchvision.models))


def default_weights(arch: str) -> Any:
    import torchvision  # imports torch._dynamo: only for torchvision models

    return torchvision.models.get_model_weights(arch).DEFAULT


def cfg_for(arch: str) -> ModelCfg:
    weights = default_weights(arch)
    t = weights.transforms()
    crop = int(t.crop_size[0])
    return ModelCfg(
        domain="imagenet",
        classes=tuple(weights.meta["categories"]),
        input_size=(3, crop, crop),
        mean=tuple(float(m) for m in t.mean),
        std=tuple(float(s) for s in t.std),
        resize=int(t.resize_size[0]),
        interpolation=t.interpolation.value,
    )


def default_profile(arch: str) -> Path:
    """The profile from ``arch``'s published metrics (vcheck.models.published), else the
    generic ImageNet floors."""
    from vcheck.models.zoo import fixtures_dir

    profiles = fixtures_dir() / "profiles"
    published = profiles / "published" / f"{arch}.toml"
    return published if published.is_file() else profiles / "imagenet.toml"


def hub_weights_path(arch: str) -> Path:
    """Where torchvision's downloader caches ``arch``'s default weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(default_weights(arch).url)


def check_weights_present(arch: str, name: str) -> Path:
    path = hub_weights_path(arch)
    if not path.is_file():
        weights = default_weights(arch)
        raise MissingArtefactError(
            f"weights for {name!r} ({weights}) not found: looked for {path} "
            f"(torch hub cache, set by $TORCH_HOME). Copy {path.name} there from a connected "
            "machine, or pass --weights PATH."
        )
    return path


def verify_hub_hash(path: Path) -> None:
    """torchvision file names end in the first hex digits of their sha256; check them."""
    stem = path.name.rsplit(".", 1)[0]
    prefix = stem.rsplit("-", 1)[-1] if "-" in stem else ""
    is_hex = len(prefix) >= 8 and all(c in "0123456789abcdef" for c in prefix)
    if is_hex and not file_sha256(path).startswith(prefix):
        raise CorruptArtefactError(
            f"{path} does not match the sha256 prefix {prefix!r} in its name "
            "(incomplete download?). Delete it and copy it again."
        )


def build(arch: str) -> nn.Module:
    import torchvision  # imports torch._dynamo: only for torchvision models

    return torchvision.models.get_model(arch, weights=None)
