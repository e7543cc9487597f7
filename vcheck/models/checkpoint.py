"""Reading weight files safely (``weights_only=True``) with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcheck.errors import CorruptArtefactError, MissingArtefactError


def read_checkpoint(path: Path) -> Any:
    """Load a weights file with ``torch.load(weights_only=True)``; never unpickles code."""
    if not path.is_file():
        raise MissingArtefactError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CorruptArtefactError(
            f"cannot read weights file {path}: {_load_error_reason(exc)}. "
            "Check that it is a PyTorch state dict saved with torch.save (not truncated)."
        ) from None


def _load_error_reason(exc: Exception) -> str:
    """The first line of torch.load's error that says what is wrong with the file.

    A weights-only refusal opens with advice to retry with ``weights_only=False`` (arbitrary
    code execution), which a one-line message must not pass on; the reason follows a marker.
    """
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = "torch.load(weights_only=True) refused it: " + text.split(marker, 1)[1].strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state dict or the common wrappers ({"state_dict": ...}, {"model": ...})."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptArtefactError(
            f"{path} does not hold a state dict (a mapping of parameter names to tensors)."
        )
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_weights(net: nn.Module, path: Path, arch: str) -> None:
    """Load ``path`` into ``net`` strictly; a mismatch names the first differing keys/shapes."""
    state = extract_state_dict(read_checkpoint(path), path)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:2])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:2])})")
        if wrong:
            parts.append(f"{len(wrong)} with other shapes (e.g. {wrong[0]})")
        raise CorruptArtefactError(
            f"weights {path} do not fit architecture {arch!r}: {'; '.join(parts)}. "
            "Pass the --model that these weights were trained for."
        )
    net.load_state_dict(state, strict=True)
