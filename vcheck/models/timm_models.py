"""``--model=timm:NAME``: timm models, offline, with preprocessing from timm's pretrained config.

``NAME`` is any timm model name, optionally with its weight tag (``convnext_tiny.fb_in1k``).
The network is built with ``pretrained=False``; its weights come from ``--weights PATH`` or
from the Hugging Face hub cache where timm's own downloader puts them
(``$HF_HUB_CACHE``/``$HF_HOME``, repo ``pretrained_cfg["hf_hub_id"]``): nothing is
downloaded. Input size, mean/std, interpolation and resize (``input_size / crop_pct``, as
timm's eval transform) come from ``timm.data.resolve_data_config``, so vcheck feeds the
model what timm's own evaluation would. 1000-class models are ImageNet-1k models (class
names as torchvision's, eval sets from ``--data-root``); thresholds are the generic
ImageNet floors (timm's configs carry no accuracy to derive a per-model profile from).

Public names: PREFIX, resolve_timm.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from vcheck.errors import InvalidArgument, MissingArtefactError, UnknownNameError, VcheckWarning
from vcheck.models.base import ModelCfg

if TYPE_CHECKING:
    from vcheck.models.resolve import ModelRef

PREFIX = "timm:"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm():
    try:
        import timm
    except ImportError:
        raise InvalidArgument(
            "--model=timm:NAME needs timm, which is not installed: pip install 'vcheck[timm]'"
        ) from None
    return timm


def _cfg(net, name: str) -> ModelCfg:
    """ModelCfg from timm's pretrained config (what timm's eval transform would do)."""
    from timm.data import resolve_data_config

    data = resolve_data_config({}, model=net)
    channels, height, width = (int(v) for v in data["input_size"])
    crop_pct = float(data.get("crop_pct") or 1.0)
    if data.get("crop_mode", "center") != "center":
        warnings.warn(
            f"vcheck: timm model {name!r} is evaluated with crop_mode={data['crop_mode']!r}; "
            "vcheck resizes and centre-crops instead",
            VcheckWarning,
            stacklevel=2,
        )
    num_classes = int(getattr(net, "num_classes", 0) or net.pretrained_cfg.get("num_classes"))
    return ModelCfg(
        domain="imagenet" if num_classes == 1000 else "timm",
        classes=_class_names(num_classes),
        input_size=(channels, height, width),
        mean=tuple(float(m) for m in data["mean"]),
        std=tuple(float(s) for s in data["std"]),
        resize=math.floor(min(height, width) / crop_pct),
        interpolation=str(data.get("interpolation", "bilinear")),
    )


def _class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == 1000:  # ImageNet-1k, in the same order as torchvision's classifiers
        import torchvision

        return tuple(torchvision.models.ResNet50_Weights.DEFAULT.meta["categories"])
    return tuple(str(i) for i in range(num_classes))


def hub_cached_weights(net) -> tuple[Path | None, str]:
    """The weights file of ``net``'s pretrained tag in the local hub cache (never fetched),
    and where it was looked for."""
    repo = net.pretrained_cfg.get("hf_hub_id")
    if not repo:
        return None, "no hf_hub_id in timm's pretrained config"
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    for filename in _WEIGHT_FILES:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found), repo
    return None, f"{repo} ({' or '.join(_WEIGHT_FILES)}) in the hub cache {HF_HUB_CACHE}"


def resolve_timm(name: str, weights: Path | None) -> ModelRef:
    """``timm:NAME`` -> ModelRef (network built, weights located, nothing read yet)."""
    from vcheck.models.resolve import ModelRef
    from vcheck.models.zoo import fixtures_dir

    timm = _timm()
    arch = name[len(PREFIX) :]
    if not arch:
        raise InvalidArgument(f"--model={name}: name a timm model, e.g. timm:convnext_tiny")
    base = arch.split(".", 1)[0]
    if not timm.is_model(base):
        raise UnknownNameError(
            "timm model", base, timm.list_models(), "See timm.list_models() for the names."
        )
    try:
        net = timm.create_model(arch, pretrained=False)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise InvalidArgument(f"--model={name}: {str(exc).splitlines()[0]}") from None
    cfg = _cfg(net, arch)
    if weights is None:
        weights, where = hub_cached_weights(net)
        if weights is None:
            raise MissingArtefactError(
                f"weights for {name!r} not found: looked for {where}. Copy the hub cache "
                "entry from a connected machine (timm.create_model(..., pretrained=True) there "
                "fills it), or pass --weights PATH."
            )
    generic = fixtures_dir() / "profiles" / "imagenet.toml"  # no published metrics here
    profile = generic if cfg.domain == "imagenet" else None
    return ModelRef(name, "timm", arch, cfg, weights, profile, lambda: net)
