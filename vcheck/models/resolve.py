"""Turns the string a user types after ``--model`` into a model.

Resolution is cheap (no weights read) so that bad names and missing files are reported
before any test runs; :meth:`ModelRef.load` does the expensive part.

Accepted forms, tried in this order:
- a path to a checkpoint saved as ``{"arch": NAME, "state_dict": ...}``;
- ``package.module:factory`` returning ``(nn.Module, ModelCfg)`` or a module with
  a ``vcheck_cfg`` attribute;
- a bundled zoo name (``fmnist_cnn``...);
- a torchvision classification model name or alias (``convnext_t``, ``resnet50``...);
- ``timm:NAME`` when timm is installed (:mod:`vcheck.models.timm_models`).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vcheck._registry import Registry
from vcheck.errors import (
    CorruptArtefactError,
    InvalidArgument,
    MissingArtefactError,
)
from vcheck.models import torchvision_models as tvm
from vcheck.models.base import ModelCfg, ModelUnderTest, file_sha256, finalize
from vcheck.models.checkpoint import load_weights, read_checkpoint
from vcheck.models.zoo import ZOO

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``--model``: what it is, where its weights are, and its static cfg."""

    name: str
    kind: str  # "zoo" | "torchvision" | "timm" | "checkpoint" | "factory"
    arch: str
    cfg: ModelCfg
    weights: Path | None
    profile: Path | None
    _build: Callable[[], nn.Module]

    def load(self, device: torch.device) -> ModelUnderTest:
        net = self._build()
        card = None
        if self.kind == "zoo" and self.weights == ZOO[self.arch].weights_path:
            card = _read_card(self.arch, self.weights)
        if self.weights is not None:
            if self.kind == "torchvision" and self.weights == tvm.hub_weights_path(self.arch):
                tvm.verify_hub_hash(self.weights)
            load_weights(net, self.weights, self.arch)
        source = str(self.weights) if self.weights else f"{self.kind}:{self.name}"
        return finalize(
            self.name, net, self.cfg, source, device, card=card, default_profile=self.profile
        )


def model_registry() -> Registry[str]:
    """Every name ``--model`` accepts without a path: zoo, torchvision names and aliases."""
    reg: Registry[str] = Registry(
        "model",
        hint="See vcheck.list_models(), or pass a checkpoint path or package.module:factory.",
        featured=(*ZOO, "convnext_t", "resnet50", "vit_b_16"),
    )
    for name in ZOO:
        reg.register(name, "zoo")
    aliases_by_target: dict[str, list[str]] = {}
    for alias, target in tvm.ALIASES.items():
        aliases_by_target.setdefault(target, []).append(alias)
    for name in tvm.classification_models():
        reg.register(name, "torchvision", tuple(aliases_by_target.get(name, ())))
    return reg


def list_models(pattern: str = "*") -> list[str]:
    """Model names ``--model`` accepts, filtered by an fnmatch pattern, e.g. ``"convnext*"``."""
    return model_registry().names(pattern, include_aliases=True)


def _resolve_zoo(name: str, arch: str, weights_path: Path | None) -> ModelRef:
    entry = ZOO[arch]
    w = weights_path or entry.weights_path
    if not w.is_file():
        raise MissingArtefactError(
            f"weights for {name!r} not found: looked for {w}. Run `make zoo` to train the "
            "bundled models, or pass --weights PATH."
        )
    return ModelRef(name, "zoo", arch, entry.cfg, w, entry.profile_path, entry.build)


def resolve_model(name: str, weights: str | Path | None = None) -> ModelRef:
    """Resolve ``--model`` (and ``--weights``) without loading any weights.

    Raises:
        UnknownNameError: no such model; the message suggests close names.
        MissingArtefactError: the weights file is not where it was looked for.
        CorruptArtefactError: a checkpoint cannot be read or names no architecture.
    """
    if not name:
        raise InvalidArgument("--model is empty; pass a model name, e.g. --model=fmnist_cnn")
    weights_path = Path(weights).expanduser() if weights else None
    if weights_path is not None and not weights_path.is_file():
        raise InvalidArgument(f"--weights={weights} is not a file; pass the path of a .pt/.pth")
    if name in ZOO:  # before the registry, whose torchvision listing imports torch._dynamo
        return _resolve_zoo(name, name, weights_path)
    path = Path(name).expanduser()
    reg = model_registry()
    looks_like_path = name.endswith(_CHECKPOINT_SUFFIXES) or "/" in name or "\\" in name
    if looks_like_path or (path.is_file() and name not in reg):
        if weights_path is not None:
            raise InvalidArgument(
                f"--weights={weights} cannot apply to --model={name}: a checkpoint carries its "
                "own weights. Drop --weights, or pass --model=ARCH --weights=PATH"
            )
        return _resolve_checkpoint(name, path)
    if name.startswith("timm:"):
        from vcheck.models.timm_models import resolve_timm

        return resolve_timm(name, weights_path)
    if ":" in name:
        if weights_path is not None:
            raise InvalidArgument(
                f"--weights={weights} cannot apply to --model={name}: a factory builds its own "
                "weights. Drop --weights and load the weights inside the factory"
            )
        return _resolve_factory(name)
    arch = reg.canonical(name)
    if reg.get(arch) == "zoo":
        return _resolve_zoo(name, arch, weights_path)
    w = weights_path or tvm.check_weights_present(arch, name)
    return ModelRef(
        name,
        "torchvision",
        arch,
        tvm.cfg_for(arch),
        w,
        tvm.default_profile(arch),
        lambda: tvm.build(arch),
    )


def _resolve_checkpoint(name: str, path: Path) -> ModelRef:
    if not path.is_file():
        raise MissingArtefactError(f"checkpoint not found: {path}")
    obj = read_checkpoint(path)
    arch = obj.get("arch") if isinstance(obj, dict) else None
    if not isinstance(arch, str):
        raise CorruptArtefactError(
            f"{path} has no 'arch' entry, so vcheck cannot tell which network it is for. "
            "Pass --model=ARCH --weights={path}, or save {'arch': ARCH, 'state_dict': ...}."
        )
    inner = resolve_model(arch, weights=path) if arch not in ZOO else None
    if inner is None:
        entry = ZOO[arch]
        return ModelRef(name, "checkpoint", arch, entry.cfg, path, entry.profile_path, entry.build)
    return ModelRef(name, "checkpoint", inner.arch, inner.cfg, path, inner.profile, inner._build)


def _resolve_factory(name: str) -> ModelRef:
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgument(
            f"--model={name}: cannot import {attr!r} from {module_name!r} ({exc}). "
            "Use package.module:factory with the module on sys.path."
        ) from None
    try:
        made = factory()
    except Exception as exc:
        raise InvalidArgument(
            f"--model={name}: the factory raised {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(made, tuple) and len(made) == 2:
        net, cfg = made
    else:
        net, cfg = made, getattr(made, "vcheck_cfg", None)
    if not isinstance(net, nn.Module) or not isinstance(cfg, ModelCfg):
        raise InvalidArgument(
            f"--model={name}: the factory must return (nn.Module, vcheck.ModelCfg) or an "
            f"nn.Module with a vcheck_cfg attribute; got {type(made).__name__}."
        )
    return ModelRef(name, "factory", name, cfg, None, None, lambda: net)


def _read_card(arch: str, weights: Path) -> dict | None:
    card_path = ZOO[arch].card_path
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    expected = card.get("weights_sha256")
    if expected and file_sha256(weights) != expected:
        raise CorruptArtefactError(
            f"{weights} does not match the sha256 in its model card {card_path}; the file was "
            "changed or damaged. Restore it with git, or retrain with `make zoo`."
        )
    return card
